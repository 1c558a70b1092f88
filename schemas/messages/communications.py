"""The `communications` channel: RFQs, quotes and their batches (docs/protocol.md section 8.10).

Owns the twelve message models of the channel, all sequenced. Every `*_ts` here is
an RFC3339 string, unlike the lifecycle `*_ts` seconds (section 7). Creator ids may
be the obscured placeholder (SHA-256 of empty input); they are kept as given. It
knows nothing of sharding or user filters.
"""

from __future__ import annotations

from typing import Literal

from schemas.messages.base import Contracts, Dollars, MessageBase, Rfc3339, Side, WireModel

__all__ = [
    "BatchQuote",
    "BatchQuoteAccepted",
    "BatchQuoteAcceptedMsg",
    "BatchQuoteCreated",
    "BatchQuoteCreatedMsg",
    "BatchQuoteExecuted",
    "BatchQuoteExecutedMsg",
    "BatchRfq",
    "BestQuoteRfq",
    "QuoteAccepted",
    "QuoteAcceptedMsg",
    "QuoteCreated",
    "QuoteCreatedMsg",
    "QuoteExecuted",
    "QuoteExecutedMsg",
    "RfqBatchBestQuotes",
    "RfqBatchBestQuotesMsg",
    "RfqBatchCreated",
    "RfqBatchCreatedMsg",
    "RfqBatchDeleted",
    "RfqBatchDeletedMsg",
    "RfqBatchExecuted",
    "RfqBatchExecutedMsg",
    "RfqCreated",
    "RfqCreatedMsg",
    "RfqDeleted",
    "RfqDeletedMsg",
    "RfqLeg",
]


class RfqLeg(WireModel):
    """One leg of a multivariate RFQ or RFQ batch."""

    event_ticker: str
    market_ticker: str
    side: Side
    yes_settlement_value_dollars: Dollars | None = None


class RfqCreatedMsg(WireModel):
    """Payload of `rfq_created`."""

    id: str
    creator_id: str
    market_ticker: str
    created_ts: Rfc3339
    event_ticker: str | None = None
    contracts_fp: Contracts | None = None
    target_cost_dollars: Dollars | None = None
    mve_collection_ticker: str | None = None
    mve_selected_legs: tuple[RfqLeg, ...] | None = None


class RfqCreated(MessageBase):
    """`rfq_created`: seq required by the spec."""

    type: Literal["rfq_created"]
    msg: RfqCreatedMsg


class RfqDeletedMsg(WireModel):
    """Payload of `rfq_deleted`."""

    id: str
    creator_id: str
    market_ticker: str
    deleted_ts: Rfc3339
    event_ticker: str | None = None
    contracts_fp: Contracts | None = None
    target_cost_dollars: Dollars | None = None


class RfqDeleted(MessageBase):
    """`rfq_deleted`: seq required by the spec."""

    type: Literal["rfq_deleted"]
    msg: RfqDeletedMsg


class QuoteCreatedMsg(WireModel):
    """Payload of `quote_created`."""

    quote_id: str
    rfq_id: str
    quote_creator_id: str
    rfq_creator_id: str
    market_ticker: str
    yes_bid_dollars: Dollars
    no_bid_dollars: Dollars
    created_ts: Rfc3339
    event_ticker: str | None = None
    yes_contracts_offered_fp: Contracts | None = None
    no_contracts_offered_fp: Contracts | None = None
    rfq_target_cost_dollars: Dollars | None = None
    subaccount: int | None = None


class QuoteCreated(MessageBase):
    """`quote_created`: seq required by the spec."""

    type: Literal["quote_created"]
    msg: QuoteCreatedMsg


class QuoteAcceptedMsg(WireModel):
    """The spec requires the four ids and both bids; the market is not among them."""

    quote_id: str
    rfq_id: str
    quote_creator_id: str
    rfq_creator_id: str
    yes_bid_dollars: Dollars
    no_bid_dollars: Dollars
    market_ticker: str | None = None
    event_ticker: str | None = None
    accepted_side: Side | None = None
    contracts_accepted_fp: Contracts | None = None
    yes_contracts_offered_fp: Contracts | None = None
    no_contracts_offered_fp: Contracts | None = None
    rfq_target_cost_dollars: Dollars | None = None
    subaccount: int | None = None


class QuoteAccepted(MessageBase):
    """`quote_accepted`: seq required by the spec."""

    type: Literal["quote_accepted"]
    msg: QuoteAcceptedMsg


class QuoteExecutedMsg(WireModel):
    """Payload of `quote_executed`."""

    quote_id: str
    rfq_id: str
    quote_creator_id: str
    rfq_creator_id: str
    order_id: str
    client_order_id: str
    market_ticker: str
    executed_ts: Rfc3339
    subaccount: int | None = None
    rfq_batch_id: str | None = None


class QuoteExecuted(MessageBase):
    """`quote_executed`: seq required by the spec."""

    type: Literal["quote_executed"]
    msg: QuoteExecutedMsg


class BatchRfq(WireModel):
    """One RFQ of a batch; `leg_indices` point into the batch's `legs`."""

    id: str
    market_ticker: str
    leg_indices: tuple[int, ...]
    event_ticker: str | None = None
    contracts_fp: Contracts | None = None
    target_cost_dollars: Dollars | None = None
    mve_collection_ticker: str | None = None


class RfqBatchCreatedMsg(WireModel):
    """Payload of `rfq_batch_created`."""

    id: str
    creator_id: str
    created_ts: Rfc3339
    legs: tuple[RfqLeg, ...]
    rfqs: tuple[BatchRfq, ...]


class RfqBatchCreated(MessageBase):
    """`rfq_batch_created`: seq required by the spec."""

    type: Literal["rfq_batch_created"]
    msg: RfqBatchCreatedMsg


class RfqBatchDeletedMsg(WireModel):
    """Payload of `rfq_batch_deleted`."""

    id: str
    creator_id: str
    rfq_ids: tuple[str, ...]
    deleted_ts: Rfc3339


class RfqBatchDeleted(MessageBase):
    """`rfq_batch_deleted`: seq required by the spec."""

    type: Literal["rfq_batch_deleted"]
    msg: RfqBatchDeletedMsg


class BatchQuote(WireModel):
    """One quote of a batch quote; further fields are kept as extras."""

    quote_id: str
    rfq_id: str
    market_ticker: str
    yes_bid_dollars: Dollars
    no_bid_dollars: Dollars


class BatchQuoteCreatedMsg(WireModel):
    """Payload of `batch_quote_created`."""

    batch_quote_id: str
    rfq_batch_id: str
    quote_creator_id: str
    created_ts: Rfc3339
    quotes: tuple[BatchQuote, ...]
    subaccount: int | None = None


class BatchQuoteCreated(MessageBase):
    """`batch_quote_created`: seq required by the spec."""

    type: Literal["batch_quote_created"]
    msg: BatchQuoteCreatedMsg


class BestQuoteRfq(WireModel):
    """The best quotes for one RFQ of a batch; sizes are kept as extras."""

    rfq_id: str
    market_ticker: str
    yes_bid_dollars: Dollars | None = None
    no_bid_dollars: Dollars | None = None


class RfqBatchBestQuotesMsg(WireModel):
    """Best quotes of a batch. Apply only a `version` higher than the last one seen."""

    rfq_batch_id: str
    version: int
    updated_ts: Rfc3339
    yes_complete: bool
    no_complete: bool
    rfqs: tuple[BestQuoteRfq, ...]
    client_batch_id: str | None = None
    subaccount: int | None = None


class RfqBatchBestQuotes(MessageBase):
    """`rfq_batch_best_quotes`: seq required by the spec."""

    type: Literal["rfq_batch_best_quotes"]
    msg: RfqBatchBestQuotesMsg


class BatchQuoteAcceptedMsg(WireModel):
    """Payload of `batch_quote_accepted`."""

    batch_quote_id: str
    rfq_batch_id: str
    quote_creator_id: str
    rfq_creator_id: str
    accepted_side: Side
    accepted_ts: Rfc3339
    quotes: tuple[BatchQuote, ...]
    subaccount: int | None = None


class BatchQuoteAccepted(MessageBase):
    """`batch_quote_accepted`: seq required by the spec."""

    type: Literal["batch_quote_accepted"]
    msg: BatchQuoteAcceptedMsg


class RfqBatchExecutedMsg(WireModel):
    """Payload of `rfq_batch_executed`."""

    rfq_batch_id: str
    rfq_creator_id: str
    executed_rfq_ids: tuple[str, ...]
    failed_rfq_ids: tuple[str, ...]
    executed_ts: Rfc3339
    close_reason: str  # executed / execution failed / partially executed
    client_batch_id: str | None = None
    subaccount: int | None = None


class RfqBatchExecuted(MessageBase):
    """`rfq_batch_executed`: seq required by the spec."""

    type: Literal["rfq_batch_executed"]
    msg: RfqBatchExecutedMsg


class BatchQuoteExecutedMsg(WireModel):
    """Payload of `batch_quote_executed`."""

    batch_quote_id: str
    rfq_batch_id: str
    rfq_creator_id: str
    executed_rfq_ids: tuple[str, ...]
    failed_rfq_ids: tuple[str, ...]
    executed_ts: Rfc3339
    close_reason: str
    subaccount: int | None = None


class BatchQuoteExecuted(MessageBase):
    """`batch_quote_executed`: seq required by the spec."""

    type: Literal["batch_quote_executed"]
    msg: BatchQuoteExecutedMsg
