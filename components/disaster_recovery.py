"""Disaster recovery: the Vault raft snapshot CronJob and the sealing-key backup CronJob, with
their volumes, ServiceAccounts and (key backup) the one Role that may list secrets."""

from components.kube import ObjectGroup


class DisasterRecovery(ObjectGroup):
    TYPE = "k8s-secrets:disaster-recovery:DisasterRecovery"
