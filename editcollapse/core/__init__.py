"""The core: types and rules every layer shares (EditCase, Delta, token batching, the collapse rule).

Imports nothing else of editcollapse, so every layer may import it.
"""
