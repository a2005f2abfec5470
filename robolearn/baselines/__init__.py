"""Peer baselines trained by other projects' own code and wrapped for our evaluator.

- :mod:`robolearn.baselines.bc_rnn`: robomimic's BC-RNN, trained by ``robomimic.scripts.train``
  on our robomimic HDF5 export (needs ``bash scripts/setup_robomimic.sh``).

Nothing here imports the peer project at module import time.
"""
