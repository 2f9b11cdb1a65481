"""Serving: the server's task tree (accept loops, connections, graceful shutdown,
``serve()``), the listening sockets, TLS, and what every connection of a server shares.
"""
