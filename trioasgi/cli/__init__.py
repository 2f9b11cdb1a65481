"""The ``trio-asgi`` command and its processes: flags, where settings come from, one
server process (``runner``), the ``--workers`` supervisor and its workers, and ``--reload``.
"""
