"""Mail: building messages (pure, `message.py`) and sending them (I/O edges: `smtp.py`,
`outbox.py`). `make_sender(cfg)` picks SMTP when a host is configured, else the outbox."""
