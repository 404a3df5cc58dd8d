"""Reset an optimizer's state at chosen entries, for any optax optimizer: `reset_entries`.

It lives in `jaxprune._reset`, below `jaxprune.masked`, which resets the state of the
entries a drop-and-grow update revives; it is exported here with the rest of dynamic sparse
training.
"""

from jaxprune._reset import reset_entries

__all__ = ["reset_entries"]
