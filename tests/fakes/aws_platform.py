"""The platform's AWS resources, made in a moto account (plain moto or FakeAws) for tests of the aws target.

A VPC with one subnet per zone, a Multi-AZ RDS DB cluster whose writer is in the
second zone and a reader in the third, and a Redis replication group with
automatic failover (its primary in the writer's zone when `cache_zones` says so).
Names end in `suffix`: moto keeps one account per process, so tests stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MOTO_ACCOUNT = "123456789012"  # the account moto answers for


@dataclass(frozen=True)
class AwsPlatform:
    session: Any  # boto3.Session
    ec2: Any
    rds: Any
    vpc: str
    subnets: list[str]  # one per zone, in the zones' order
    cluster: str
    group: str

    def network_acls(self) -> dict[str, str]:
        """subnet id -> the network ACL associated with it now."""
        acls = self.ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": self.subnets}])
        return {a["SubnetId"]: acl["NetworkAclId"] for acl in acls["NetworkAcls"] for a in acl["Associations"]
                if a["SubnetId"] in self.subnets}


def provision(url: str, region: str, zones: tuple[str, str, str], suffix: str,
              cache_zones: list[str] | None = None) -> AwsPlatform:
    """Create the resources at the endpoint `url` (credentials from the environment)."""
    import boto3
    session = boto3.Session(region_name=region)
    ec2 = session.client("ec2", endpoint_url=url)
    rds = session.client("rds", endpoint_url=url)
    cache = session.client("elasticache", endpoint_url=url)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]  # moto's, in memory: no traffic goes there
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=z)["Subnet"]["SubnetId"]
               for i, z in enumerate(zones)]
    rds.create_db_subnet_group(DBSubnetGroupName=f"sg-{suffix}", DBSubnetGroupDescription="test",
                               SubnetIds=subnets)
    cluster = f"db-{suffix}"
    rds.create_db_cluster(DBClusterIdentifier=cluster, Engine="aurora-postgresql", MasterUsername="app",
                          MasterUserPassword="not-a-secret-1", DBSubnetGroupName=f"sg-{suffix}")
    for name, zone in ((f"{cluster}-1", zones[1]), (f"{cluster}-2", zones[2])):  # the first is the writer
        rds.create_db_instance(DBInstanceIdentifier=name, DBClusterIdentifier=cluster, Engine="aurora-postgresql",
                               DBInstanceClass="db.r6g.large", AvailabilityZone=zone)
    group = f"rg-{suffix}"
    cache.create_replication_group(ReplicationGroupId=group, ReplicationGroupDescription="test", Engine="redis",
                                   CacheNodeType="cache.t4g.small", NumCacheClusters=2, AutomaticFailoverEnabled=True,
                                   **({"PreferredCacheClusterAZs": cache_zones} if cache_zones else {}))
    return AwsPlatform(session, ec2, rds, vpc, subnets, cluster, group)
