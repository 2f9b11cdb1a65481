"""HTTP/2: one connection's nursery (reader, writer, a task per stream) over h2's state machine.

``connection`` moves bytes between the socket and h2 and routes h2's events
to streams; ``stream`` is one stream's share of the connection (its body,
its flow-control windows, its reset); ``cycle`` is the ASGI request cycle
over a stream; ``request`` turns a header block into the request head;
``flood`` counts what the known HTTP/2 attacks repeat; ``websocket`` runs
the WebSocket session over an extended CONNECT stream (RFC 8441).
"""
