"""The application's side of every protocol: the ASGI interface and scope, the request
cycle's ``receive``/``send`` state machine and app-error handling (written once, used by
HTTP/1.1 and HTTP/2), the lifespan protocol, and importing the app.
"""
