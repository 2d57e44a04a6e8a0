"""Rendering: notices to the text each platform will show. Pure: no I/O."""
