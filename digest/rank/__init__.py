"""Pure: no I/O. The ranker: which of the day's papers each subscriber gets, and why.

Public API: `rank(papers, subscribers, *, exclude={}, popularity_weight=0.15)`; see
digest/rank/model.py for the score scale (0..100) and the model.
"""

from digest.rank.model import paper_scores, rank

__all__ = ["paper_scores", "rank"]
