"""HTTP/1.1: one connection's task (``connection``), the request cycle over h11's
interface (``cycle``), the two parsers behind that interface (h11 and httptools), the
response writer and the strict request checks.
"""
