"""Sans-IO tests of the pure modules (core/, audit/): vectors in, results out, no store on disk."""
