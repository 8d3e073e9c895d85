"""Brokers: where messages are numbered, kept and fanned out. Picked by URL scheme."""

from .base import Broker, BrokerUnavailable, ChannelInfo, Replay, open_broker

__all__ = ["Broker", "BrokerUnavailable", "ChannelInfo", "Replay", "open_broker"]
