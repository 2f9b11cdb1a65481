"""Real Starlette and FastAPI apps (anyio on trio) served end to end."""

from __future__ import annotations

import contextlib

import httpx
import trio
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from tests.conftest import running_server

events: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app):
    events.append("startup")
    yield {"greeting": "hello from lifespan"}
    events.append("shutdown")


async def greet(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.state.greeting)


async def stream(request: Request) -> StreamingResponse:
    async def numbers():
        for i in range(5):
            yield f"{i}\n"
            await trio.sleep(0)

    return StreamingResponse(numbers(), media_type="text/plain")


async def upload(request: Request) -> JSONResponse:
    size = 0
    chunks = 0
    async for chunk in request.stream():
        size += len(chunk)
        chunks += bool(chunk)
    return JSONResponse({"size": size, "chunks": chunks})


async def scope_info(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "path": request.url.path,
            "root_path": request.scope["root_path"],
            "q": request.query_params["q"],
        }
    )


starlette_app = Starlette(
    routes=[
        Route("/greet", greet),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
        Route("/info", scope_info),
    ],
    lifespan=lifespan,
)


async def test_starlette_lifespan_state_streaming_and_chunked_upload() -> None:
    events.clear()

    async def chunked_body():
        for _ in range(20):
            yield b"x" * 10_000

    async with running_server(starlette_app) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/greet")).text == "hello from lifespan"

            response = await client.get("/stream")
            assert response.text == "0\n1\n2\n3\n4\n"
            assert response.headers["transfer-encoding"] == "chunked"

            response = await client.post("/upload", content=chunked_body())
            assert response.json()["size"] == 200_000

            assert (await client.get("/missing")).status_code == 404
        server.stop()
        await server.stopped.wait()
    assert events == ["startup", "shutdown"]


async def test_starlette_sees_root_path() -> None:
    async with (
        running_server(starlette_app, root_path="/api") as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        response = await client.get("/info?q=1")
    assert response.json() == {"path": "/api/info", "root_path": "/api", "q": "1"}


async def test_starlette_streaming_stops_when_the_client_disconnects(caplog) -> None:
    produced = []
    app_returned = trio.Event()

    async def endless(request: Request) -> StreamingResponse:
        async def forever():
            for i in range(100_000):
                produced.append(i)
                yield b"tick\n"
                await trio.sleep(0.001)

        return StreamingResponse(forever())

    starlette = Starlette(routes=[Route("/", endless)])

    async def app(scope, receive, send):
        try:
            await starlette(scope, receive, send)
        finally:
            if scope["type"] == "http":
                app_returned.set()

    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_some(1000)
        await stream.aclose()
        with trio.fail_after(10):
            await app_returned.wait()
    assert len(produced) < 100_000
    assert "Exception in ASGI application" not in caplog.text  # a disconnect is no app bug


async def test_fastapi_app() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    async def create(item: dict):
        return {"received": item}

    async with (
        running_server(app) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        assert (await client.get("/items/3?q=x")).json() == {"item_id": 3, "q": "x"}
        assert (await client.get("/items/notanumber")).status_code == 422
        assert (await client.post("/items", json={"a": 1})).json() == {"received": {"a": 1}}
