"""The screen: every case's ROME collapse risk from forward passes, before any edit (see docs/stages/screen.md)."""
