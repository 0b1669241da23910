"""digest: a self-hosted daily email digest of trending research papers.

Layout (the architecture in one glance):

    sources/   I/O edge: fetch papers from Hugging Face and arXiv (httpx)
    rank/      Pure: score papers for every subscriber at once (numpy/scipy)
    render.py  Pure: Jinja2 templates -> subject, text and HTML of one digest
    mail/      Pure message building + I/O edges that send (SMTP, outbox folder)
    store/     I/O edge: the seen-store, subscribers and delivery records (TinyDB)
    pipeline.py  Where the stages meet: fetch, diff, rank, render, deliver, record
    cli.py     The command line (`digest run`, `digest subscribers ...`)
"""

__version__ = "0.1.0"
