"""Accounts opened during the simulated window (`SimulatorConfig.new_accounts`): the cold-start users.

Everyone else has spent since before the window began. A share `new_accounts` of the population opens
its account on a random day of the window instead: its legitimate spending starts then (what the
behaviour model drew before it is dropped), and its profile's `account_age_days` is the account's age
at the window's end. So the data holds users with one, two, five past payments at any time — the
users on whom a sequence model has nothing to read and the profile embedding has to carry the score
(issue 17) — and `new_account_takeover` (scenarios.py) defrauds them. Off by default: the default
data is byte for byte what it was.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .batch import Events
from .population import World

NOT_NEW = -1  # `opened` of an account older than the window


def open_accounts(world: World, legit: Events, rng: np.random.Generator) -> tuple[World, Events, np.ndarray]:
    """→ (the world with the new accounts' ages, the legitimate events from each account's opening on,
    opened (users,) int64: seconds since the window start, or NOT_NEW)."""
    cfg, users = world.cfg, world.users
    n = users.n
    opened = np.full(n, NOT_NEW, dtype=np.int64)
    if cfg.new_accounts <= 0:
        return world, legit, opened
    new = rng.random(n) < cfg.new_accounts
    last_day = max(cfg.days - 1, 1)  # an account opens at least a day before the window ends
    opened[new] = rng.integers(0, last_day * 86_400, size=int(new.sum()))
    age = users.account_age_days.copy()
    age[new] = (cfg.seconds - opened[new]) // 86_400
    world = dataclasses.replace(world, users=dataclasses.replace(users, account_age_days=age))
    return world, legit.take(np.flatnonzero(legit.t >= np.maximum(opened, 0)[legit.user])), opened
