"""Runs the Store contract (tests/store_contract.py, store_contract_web.py) over every
backend factory in store_contract.FACTORIES."""

from store_contract import *  # noqa: F403 - the contract's tests and fixtures
from store_contract_web import *  # noqa: F403
