"""A client for SeekrFlow's training-data attribution API (and for `refine serve`, which speaks it)."""

from .client import (AsyncSeekrFlowClient, InfluenceResponse, InfluenceResult, RetryPolicy,
                     SeekrFlowClient, SeekrFlowError, parse_response)

__all__ = ["AsyncSeekrFlowClient", "InfluenceResponse", "InfluenceResult", "RetryPolicy",
           "SeekrFlowClient", "SeekrFlowError", "parse_response"]
