"""Runs the Store contract (tests/store_contract.py) over every backend factory there."""

from store_contract import *  # noqa: F403 - the contract's tests and fixtures
