"""The aws target's managed services: RDS and ElastiCache observed (services.py), failed over (nemesis.py),
and a zone's subnets cut (blackhole.py)."""
