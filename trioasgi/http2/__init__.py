"""HTTP/2: one connection's nursery (reader, writer, a task per stream) over h2's state machine.

``connection`` reads the socket into h2 and routes h2's events to the
streams, starting a task per request; ``writer`` is the only task that
writes the socket, and holds the bounds on unwritten bytes; ``machine`` is
h2 as the server configures and bounds it; ``stream`` is one stream's share
of the connection (its body, its flow-control windows, its reset);
``cycle`` is the ASGI request cycle over a stream; ``request`` checks a
header block and makes the request head; ``flood`` counts what the known
HTTP/2 attacks repeat; ``websocket`` runs the WebSocket session over an
extended CONNECT stream (RFC 8441).
"""
