"""Rotation CronJobs running `python -m ksecrets.rotate`, and their ServiceAccounts."""

from components.kube import ObjectGroup


class Rotation(ObjectGroup):
    TYPE = "k8s-secrets:rotation:Rotation"
