"""The mini-program API's requests and answers, typed (pydantic): checked on the way in,
and the OpenAPI document at /api/mp/v1/openapi.json is generated from them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Error(BaseModel):
    error: str = Field(description="a short code: unauthorized, not_found, invalid, too_fast, …")
    message: str = Field(description="in Chinese, for the person")


class LoginIn(_In):
    code: str = Field(min_length=1, max_length=128, description="wx.login()'s code")


class LoginOut(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`")
    expires_at: datetime
    cases: int = Field(description="cases this person is already verified for")


class VerifyIn(_In):
    scan: str = Field(
        min_length=1, max_length=128, description="the scanned code's token, or its short code"
    )
    digits: str | None = Field(
        default=None, pattern=r"^\d{4}$", description="last four digits of the phone"
    )
    phone_code: str | None = Field(
        default=None, max_length=128, description="getPhoneNumber's one-time code"
    )


class Judge(BaseModel):
    name: str
    title: str


class CourtOut(BaseModel):
    name: str
    phone: str | None
    address: str | None
    hours: str | None


class CaseOut(BaseModel):
    id: int
    case_number: str
    case_type: str
    cause: str
    court: CourtOut
    judge: Judge | None
    role: str | None = Field(description="who they are on it: 原告, 被告, …")
    verified_by: str = Field(description="phone_tail | phone_number | assisted")


class VerifyOut(BaseModel):
    verified: bool
    message: str
    case: CaseOut | None


class CasesOut(BaseModel):
    cases: list[CaseOut]


class EnforcementLine(BaseModel):
    kind: str
    at: datetime
    text: str


class BookingOut(BaseModel):
    id: int
    start_at: datetime
    end_at: datetime
    mediator: str | None
    room_url: str | None


class CaseDetail(BaseModel):
    case: CaseOut
    enforcement: list[EnforcementLine]
    received: str
    paid: str
    booking: BookingOut | None


class ItemOut(BaseModel):
    id: int
    case_id: int
    case_number: str
    kind: Literal["question", "complaint", "mediation", "asset_lead"] | str
    kind_name: str
    status: str
    status_name: str
    holder: str = Field(description="who is handling it, as the person is told")
    due_at: datetime | None
    created_at: datetime
    submitted_by: str | None = Field(
        default=None,
        description="staff at the service desk submitted it for the person: the words to "
        "show (由工作人员赵敏代为提交); null when they did it themselves",
    )


class ItemsOut(BaseModel):
    items: list[ItemOut]


class SaidOut(BaseModel):
    at: datetime
    mine: bool
    who: str
    text: str


class ItemDetail(BaseModel):
    item: ItemOut
    thread: list[SaidOut]


class OpenIn(_In):
    case_id: int = Field(gt=0)
    kind: Literal["question", "complaint", "asset_lead"]
    about: Literal["staff", "process", "other_party", "other"] | None = Field(
        default=None, description="complaints: what it is about"
    )
    text: str = Field(min_length=1, max_length=2000)


class AddIn(_In):
    text: str = Field(min_length=1, max_length=2000)


class RateIn(_In):
    case_id: int = Field(gt=0)
    ticket_id: int | None = Field(default=None, gt=0, description="None: the court's service")
    score: Literal[1, 2, 3] = Field(description="1 满意, 2 基本满意, 3 不满意")
    comment: str = Field(default="", max_length=500)


class ActionOut(BaseModel):
    message: str = Field(description="what the chat would have said, for the person")
    ticket_id: int | None
    receipt_url: str | None


class ReceiptOut(BaseModel):
    kind: str
    case_number: str
    at: datetime
    intact: bool
    in_log: bool
    url: str


class EventOut(BaseModel):
    id: int
    at: datetime
    text: str
    case_number: str | None
    ticket_id: int | None


class EventsOut(BaseModel):
    events: list[EventOut]
    cursor: int = Field(description="pass as `since` to get what comes after")


class SubscribeIn(_In):
    template_ids: list[str] = Field(
        min_length=1, max_length=3, description="the ones wx.requestSubscribeMessage accepted"
    )


class SubscribeOut(BaseModel):
    granted: int


class MediatorOut(BaseModel):
    id: int
    name: str
    speciality: str | None
    next_free: datetime | None = Field(description="None: no free time in the next two weeks")


class MediatorsOut(BaseModel):
    mediators: list[MediatorOut]


class SlotOut(BaseModel):
    id: int
    start_at: datetime
    end_at: datetime


class SlotsOut(BaseModel):
    slots: list[SlotOut]


class BookIn(_In):
    slot_id: int = Field(gt=0, description="a free slot of one of the case's court's mediators")
