"""Clients for SeekrFlow's training-data attribution API and its files and fine-tuning API
(and for `refine serve`, which speaks both)."""

from .client import (AsyncSeekrFlowClient, InfluenceResponse, InfluenceResult, RetryPolicy,
                     SeekrFlowClient, SeekrFlowError, parse_response)
from .flow import FlowClient

__all__ = ["AsyncSeekrFlowClient", "FlowClient", "InfluenceResponse", "InfluenceResult", "RetryPolicy",
           "SeekrFlowClient", "SeekrFlowError", "parse_response"]
