"""The bottom layer, which every other imports and which imports none of them: the settings
(``Config``) and their checks, the errors, logging, the ``Date`` header, plain-socket I/O,
and the sans-I/O rules shared by every protocol (bind specs, trusted proxies, the access
log's template).
"""
