"""The WebSocket edge: handshake, per-connection writer and delivery, frame routing."""
