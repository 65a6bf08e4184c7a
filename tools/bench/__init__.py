"""Helpers of tools/bench_peers.py: the item corpus, the systems compared, the timing harness,
the durability probes (PRAGMA read-back, fsyncs counted with strace), concurrency and scaling."""
