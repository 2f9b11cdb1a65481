// One worker of the WebSocket echo scenario's load generator (Node's ws client).
//
//   node client.js PORT CONNECTIONS DURATION_SECONDS
//
// Opens CONNECTIONS websockets to ws://127.0.0.1:PORT/ws, then on each one
// sends the message and waits for its echo before sending the next (closed
// loop) for DURATION_SECONDS, and prints one JSON line:
// {"messages": N, "errors": N, "elapsed": seconds, "error": first error or null}.
// Compiled event loop, C++ framing and masking: far less CPU per message
// than the Python clients, so the server, not this, is the ceiling.
"use strict";

const WebSocket = require("ws");

// Encoded once; sent as a text frame, as the Python client sends it.
const MESSAGE = Buffer.from("hello, websocket");
const SEND_OPTIONS = { binary: false, compress: false };
const CONNECT_TIMEOUT_MS = 10000;

const [port, connections, duration] = process.argv.slice(2).map(Number);
if (!(port > 0) || !(connections > 0) || !(duration > 0)) {
  console.error("usage: node client.js PORT CONNECTIONS DURATION_SECONDS");
  process.exit(2);
}

let messages = 0;
let errors = 0;
let firstError = null;
let running = false;
const sockets = [];

function noteError(err) {
  errors += 1;
  if (firstError === null) firstError = String(err && err.message ? err.message : err);
}

function open() {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, {
      perMessageDeflate: false,
      // The echo is our own message: checking its UTF-8 is the client's cost, not the server's.
      skipUTF8Validation: true,
    });
    const timer = setTimeout(() => {
      noteError("connect timeout");
      ws.terminate();
      resolve(null);
    }, CONNECT_TIMEOUT_MS);
    ws.on("open", () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.on("error", (err) => {
      clearTimeout(timer);
      noteError(err);
      resolve(null);
    });
  });
}

async function main() {
  const opened = (await Promise.all(Array.from({ length: connections }, open))).filter(Boolean);
  if (opened.length === 0) {
    console.log(JSON.stringify({ messages: 0, errors, elapsed: 0, error: firstError }));
    return;
  }
  sockets.push(...opened);
  running = true;
  const start = process.hrtime.bigint();
  for (const ws of sockets) {
    ws.on("message", () => {
      if (!running) return;
      messages += 1;
      ws.send(MESSAGE, SEND_OPTIONS);
    });
    ws.on("close", () => {
      if (running) noteError("closed by the server");
    });
    ws.send(MESSAGE, SEND_OPTIONS);
  }
  setTimeout(() => {
    running = false;
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    for (const ws of sockets) ws.close(1000);
    console.log(JSON.stringify({ messages, errors, elapsed, error: firstError }));
    // Leave once the closes are sent; do not wait for every handshake.
    setTimeout(() => process.exit(0), 200);
  }, duration * 1000);
}

main();
