"""The kubernetes target: the platform on a cluster (platform.py), its faults (nemesis.py), its watches
(observer.py), and the manifests, exposure, RBAC and API plan it applies."""
