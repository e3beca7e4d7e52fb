"""Unit tests of the federation leaves: hosts, jsonsafe, signatures, transport."""
