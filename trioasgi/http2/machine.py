"""h2's state machine as a server's connection uses it: its settings, and the bounds h2 lacks.

h2 is sans-I/O and does the protocol (framing, HPACK, streams' states,
flow-control accounting); this module configures it for the server and
closes, by subclassing, the gaps in what it bounds:

- a stream over ``MAX_CONCURRENT_STREAMS`` is refused by the connection on
  that stream alone (h2 would end the connection);
- a header block waiting for its end is held only so far (h2 would hold 64
  CONTINUATION frames, up to 1 GiB);
- h2 remembers 1,024 closed streams, not 65,536;
- our HPACK encoder's table stays at 4,096 bytes whatever the client allows.

Inbound and outbound header validation are off: the connection's own checks
(``request``, ``cycle``) do the same in one pass each.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.frame_buffer
import h2.settings
from hyperframe.frame import ContinuationFrame

from ..core.config import Config

#: The most our HPACK encoder keeps of the response fields it has sent (the default).
MAX_ENCODER_TABLE_SIZE = 4096


def server_connection(config: Config) -> h2.connection.H2Connection:
    """A server's h2 connection with the settings ``config`` asks for, not yet started."""
    connection = _ServerConnection(
        h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )
    connection.local_settings = h2.settings.Settings(
        client=False,
        initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: config.h2_max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: config.h2_max_header_list_size,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: config.h2_max_inbound_frame_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: config.h2_initial_window_size,
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: int(config.ws != "none"),
        },
    )
    frame_buffer = _FrameBuffer(server=True)
    frame_buffer.max_frame_size = connection.incoming_buffer.max_frame_size
    frame_buffer.max_block_size = HEADER_BLOCK_FACTOR * config.h2_max_header_list_size
    connection.incoming_buffer = frame_buffer
    return connection


def bound_encoder_table(connection: h2.connection.H2Connection) -> None:
    """Keep our HPACK encoder's table at :data:`MAX_ENCODER_TABLE_SIZE` at most.

    h2 sizes it as the client allows, up to 4 GiB, and the table keeps every
    new response field for the connection's life: we use less (RFC 7541, 4.2
    lets an encoder). Called whenever the client's settings may have changed it.
    """
    encoder = connection.encoder
    if encoder.header_table_size > MAX_ENCODER_TABLE_SIZE:
        encoder.header_table_size = MAX_ENCODER_TABLE_SIZE


class _ServerConnection(h2.connection.H2Connection):
    """h2's connection, but a stream over the concurrency limit is ours to refuse.

    h2 answers a HEADERS frame beyond ``MAX_CONCURRENT_STREAMS`` with a
    connection error, ending every stream; RFC 9113 (5.1.2) lets the server
    refuse that one stream instead, which :class:`HTTP2Connection` does with
    its own count of running streams. The property still runs h2's own
    count, which also forgets the streams that have closed.
    """

    _new_streams = 0

    #: How many closed streams h2 remembers (how each was closed, to answer a
    #: late frame on one). h2's own 65,536 grow to some 8 MB on a connection
    #: that has served that many streams, for its life; a late frame on a
    #: stream forgotten is a connection error (RFC 9113, 5.1 allows it).
    MAX_CLOSED_STREAMS = 1024

    @property
    def open_inbound_streams(self) -> int:
        # h2's count walks every stream: done for every 16th new stream only,
        # for its side effect (closed streams are forgotten).
        self._new_streams += 1
        if not self._new_streams % 16:
            super().open_inbound_streams  # noqa: B018
        return 0


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame buffer, but a header block still waiting for its end is held only so far.

    h2 keeps up to 64 CONTINUATION frames of one block before it gives up,
    64 times the largest frame (1 MiB by default, 1 GiB with the largest
    ``h2_max_inbound_frame_size``), whatever the header list limit; the
    block is decoded (and its size checked) only at its end. A block that
    has grown past :data:`HEADER_BLOCK_FACTOR` times the header list limit
    cannot decode within it (Huffman coding expands an octet to 30 bits at
    most), so the connection ends then (``ENHANCE_YOUR_CALM``).
    """

    max_block_size = 0

    def _update_header_buffer(self, f: Any) -> Any:
        held = self._headers_buffer
        # (Another frame inside a block is h2's to refuse.)
        if held and type(f) is ContinuationFrame:
            size = len(f.data) + sum(len(frame.data) for frame in held)  # 64 frames at most
            if size > self.max_block_size:
                raise h2.exceptions.DenialOfServiceError(
                    f"a header block of more than {self.max_block_size} bytes"
                )
        return super()._update_header_buffer(f)


#: How many times the header list limit a header block may take before it is decoded.
HEADER_BLOCK_FACTOR = 4
