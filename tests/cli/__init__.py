"""The CLI as a subprocess, and what reaches a terminal."""
