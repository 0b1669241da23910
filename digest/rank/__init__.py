"""Pure: no I/O. The ranker: which of the day's papers each subscriber gets, and why.

Public API: `rank(papers, subscribers, *, exclude={}, popularity_weight=...)` (default:
`[ranking] popularity_weight`) and
`paper_scores(papers, subscriber)`; digest/rank/model.py documents the score scale
(0..100) and the model. `cli_rank` / `register` (digest/rank/cli.py) are the I/O edge of
the `digest rank` subcommand and are re-exported here for digest/cli.py.
"""

from digest.rank.cli import cli_rank, register
from digest.rank.model import VECTOR_CACHE, paper_scores, rank

__all__ = ["VECTOR_CACHE", "cli_rank", "paper_scores", "rank", "register"]
