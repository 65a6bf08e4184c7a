"""Crash sweeps (all marked `crash`): a fault, power cut or kill at every OS call, syscall replays."""
