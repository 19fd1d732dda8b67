"""Tests of native (C/C++) stage plugins."""
