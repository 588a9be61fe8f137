"""The `>>>` examples in the serving modules' docstrings are tests too."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from stream import triton_client
from triton_repo import server, synthetic


@pytest.mark.parametrize("module", [synthetic, server, triton_client], ids=lambda m: m.__name__)
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
