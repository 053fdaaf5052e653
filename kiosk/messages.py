"""Reason codes and what a visitor is told about them, Vietnamese first.

One table for every reason a decision can carry. The gate screen, the log
and the exports show these same words; payload formats that plug in later
add their reasons with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    vi: str
    en: str


_MESSAGES: dict[str, Message] = {
    # allowed
    "ok": Message("Mời vào", "Welcome, please enter"),
    "ok-exit": Message("Tạm biệt, hẹn gặp lại", "Goodbye, see you again"),
    "override": Message("Bảo vệ cho phép vào", "Admitted by the guard"),
    "manual-admit": Message("Bảo vệ cho phép vào", "Admitted by the guard"),
    # policy refusals and warnings
    "antipassback": Message(
        "Mã này đã được dùng để vào và chưa ra", "This code was used to enter and has not exited"
    ),
    "denylisted": Message(
        "Không được phép vào. Vui lòng gặp bảo vệ", "Entry not permitted. Please see the guard"
    ),
    "capacity-full": Message(
        "Đã đủ số người cho phép. Vui lòng chờ", "The site is at capacity. Please wait"
    ),
    "kind-not-allowed": Message(
        "Loại mã này không được chấp nhận tại cổng", "This kind of code is not accepted here"
    ),
    # a gate of a site that has not heard the other gates (a partition)
    "site-view-stale": Message(
        "Cổng đang mất kết nối với các cổng khác", "This gate cannot hear the other gates"
    ),
    "antipassback-stale": Message(
        "Mã này đã được dùng để vào và chưa ra (cổng đang mất kết nối)",
        "This code was used to enter and has not exited (gate offline)",
    ),
    "antipassback-unverified": Message(
        "Cổng đang mất kết nối, chưa kiểm tra được lượt vào. Vui lòng gặp bảo vệ",
        "This gate cannot check entries at other gates now. Please see the guard",
    ),
    "capacity-share-used": Message(
        "Cổng đang mất kết nối và đã đủ số người cho phép. Vui lòng chờ",
        "This gate is offline and has admitted its share of places. Please wait",
    ),
    "store-fault": Message(
        "Hệ thống đang lỗi. Vui lòng gặp bảo vệ", "System fault. Please see the guard"
    ),
    # payloads
    "unrecognised": Message("Không nhận ra mã QR này", "This QR code is not recognised"),
    "payload-too-large": Message("Không nhận ra mã QR này", "This QR code is not recognised"),
    "parser-error": Message("Không đọc được mã QR này", "This QR code could not be read"),
    # the chip ID card (CCCD)
    "cccd-bad-encoding": Message(
        "Không đọc được mã QR căn cước", "The ID card QR code could not be read"
    ),
    "cccd-bad-id": Message("Số căn cước không hợp lệ", "Invalid ID card number"),
    "cccd-bad-fields": Message(
        "Mã QR căn cước thiếu thông tin", "The ID card QR code is incomplete"
    ),
    "cccd-bad-name": Message("Họ tên trên căn cước không hợp lệ", "Invalid name on the ID card"),
    "cccd-bad-birth-date": Message(
        "Ngày sinh trên căn cước không hợp lệ", "Invalid date of birth on the ID card"
    ),
    "cccd-bad-gender": Message(
        "Giới tính trên căn cước không hợp lệ", "Invalid gender on the ID card"
    ),
    "cccd-bad-issue-date": Message(
        "Ngày cấp căn cước không hợp lệ", "Invalid issue date on the ID card"
    ),
    # the national personal QR (PC-Covid)
    "pccovid-bad-encoding": Message(
        "Không đọc được mã QR cá nhân", "The personal QR code could not be read"
    ),
    "pccovid-bad-fields": Message(
        "Mã QR cá nhân thiếu thông tin", "The personal QR code is incomplete"
    ),
    "pccovid-bad-id": Message(
        "Số giấy tờ trong mã QR cá nhân không hợp lệ", "Invalid document number in the personal QR"
    ),
    "pccovid-bad-qid": Message("Mã định danh QR không hợp lệ", "Invalid QR identifier"),
    "pccovid-bad-name": Message(
        "Họ tên trong mã QR cá nhân không hợp lệ", "Invalid name in the personal QR"
    ),
    "pccovid-bad-birth-date": Message(
        "Ngày sinh trong mã QR cá nhân không hợp lệ", "Invalid date of birth in the personal QR"
    ),
    # the site's own codes: health declarations and staff passes (GK1:)
    "sitecode-bad-encoding": Message(
        "Mã bị hỏng, không đọc được. Vui lòng mở lại mã", "This code is damaged. Please reopen it"
    ),
    "sitecode-unknown-key": Message(
        "Mã không do nơi này cấp", "This code was not issued by this site"
    ),
    "sitecode-retired-key": Message(
        "Mã đã bị thu hồi. Vui lòng khai báo lại hoặc gặp bảo vệ",
        "This code has been withdrawn. Please declare again or see the guard",
    ),
    "sitecode-bad-signature": Message(
        "Mã không hợp lệ. Vui lòng gặp bảo vệ", "This code is not genuine. Please see the guard"
    ),
    "sitecode-bad-claims": Message(
        "Mã thiếu hoặc sai thông tin. Vui lòng gặp bảo vệ",
        "This code has missing or invalid details. Please see the guard",
    ),
    "sitecode-wrong-site": Message("Mã này dành cho nơi khác", "This code is for a different site"),
    "sitecode-not-yet-valid": Message(
        "Mã chưa đến thời gian sử dụng", "This code is not valid yet"
    ),
    "sitecode-expired": Message("Mã đã hết hạn", "This code has expired"),
    "sitecode-revoked": Message(
        "Mã đã bị hủy. Vui lòng gặp bảo vệ", "This code has been cancelled. Please see the guard"
    ),
    "sitecode-refused-answers": Message(
        "Tờ khai y tế cần được kiểm tra. Vui lòng gặp bảo vệ",
        "Your health declaration needs checking. Please see the guard",
    ),
    # EU Digital COVID Certificates / Vietnam's vaccine passport (HC1:)
    "hcert-bad-encoding": Message(
        "Không đọc được chứng nhận COVID. Vui lòng mở lại mã",
        "The COVID certificate could not be read. Please reopen it",
    ),
    "hcert-unknown-key": Message(
        "Chứng nhận COVID do nơi cấp chưa được công nhận tại đây. Vui lòng gặp bảo vệ",
        "This COVID certificate's issuer is not trusted here. Please see the guard",
    ),
    "hcert-bad-signature": Message(
        "Chứng nhận COVID không hợp lệ. Vui lòng gặp bảo vệ",
        "This COVID certificate is not genuine. Please see the guard",
    ),
    "hcert-bad-claims": Message(
        "Chứng nhận COVID thiếu thông tin. Vui lòng gặp bảo vệ",
        "This COVID certificate has missing details. Please see the guard",
    ),
    "hcert-signer-expired": Message(
        "Chứng nhận COVID được ký bằng khóa đã hết hạn. Vui lòng gặp bảo vệ",
        "This COVID certificate was signed with an expired key. Please see the guard",
    ),
    "hcert-wrong-key-usage": Message(
        "Nơi cấp không được phép cấp loại chứng nhận này. Vui lòng gặp bảo vệ",
        "The issuer may not issue this kind of certificate. Please see the guard",
    ),
    "hcert-expired": Message("Chứng nhận COVID đã hết hạn", "This COVID certificate has expired"),
    "hcert-not-yet-valid": Message(
        "Chứng nhận COVID chưa có hiệu lực", "This COVID certificate is not valid yet"
    ),
    "hcert-bad-schema": Message(
        "Nội dung chứng nhận COVID không đúng quy định. Vui lòng gặp bảo vệ",
        "This COVID certificate's content is invalid. Please see the guard",
    ),
    "hcert-vaccination-incomplete": Message(
        "Chưa tiêm đủ liều vắc-xin", "The vaccination course is not complete"
    ),
    "hcert-vaccination-too-recent": Message(
        "Mũi tiêm cuối chưa đủ số ngày quy định", "The last dose is too recent"
    ),
    "hcert-test-positive": Message(
        "Kết quả xét nghiệm không âm tính. Vui lòng gặp bảo vệ",
        "The test result is not negative. Please see the guard",
    ),
    "hcert-test-too-old": Message(
        "Kết quả xét nghiệm đã quá thời hạn", "The test was taken too long ago"
    ),
    "hcert-recovery-not-valid": Message(
        "Chứng nhận khỏi bệnh không còn hoặc chưa có hiệu lực",
        "The recovery certificate is not valid today",
    ),
}

_PREFIX_FALLBACKS: dict[str, Message] = {
    "cccd-": Message("Mã QR căn cước không hợp lệ", "Invalid ID card QR code"),
    "pccovid-": Message("Mã QR cá nhân không hợp lệ", "Invalid personal QR code"),
    "sitecode-": Message(
        "Mã không hợp lệ. Vui lòng gặp bảo vệ", "Invalid code. Please see the guard"
    ),
}

_PREFIX_FALLBACKS["hcert-"] = Message(
    "Chứng nhận COVID không hợp lệ. Vui lòng gặp bảo vệ",
    "Invalid COVID certificate. Please see the guard",
)

_GENERIC = Message("Mã QR không hợp lệ", "Invalid QR code")


BY_HAND = Message("Bảo vệ cho vào", "Let in by the guard")
"""The one name people read for an entry a guard let in without a code: the
gate's override button (kind ``override``) and the web's admit-once (kind
``manual``) are the same act, so they read the same."""

_KINDS: dict[str, Message] = {
    "cccd": Message("Căn cước gắn chip", "Chip ID card"),
    "pc-covid": Message("Mã QR cá nhân (PC-Covid)", "Personal QR (PC-Covid)"),
    "declaration": Message("Tờ khai y tế", "Health declaration"),
    "staff-pass": Message("Thẻ nhân viên", "Staff pass"),
    "hcert": Message("Chứng nhận COVID", "COVID certificate"),
    "unrecognised": Message("Mã không nhận ra", "Unrecognised code"),
    "override": BY_HAND,
    "manual": BY_HAND,
}


def kind_label(kind: str | None) -> Message:
    """What people read for a code kind (the log, the event page, exports);
    an unknown kind reads as itself, so a later format still shows something."""
    if not kind:
        return Message("", "")
    return _KINDS.get(kind, Message(kind, kind))


def register(reason: str, message: Message) -> None:
    """Add (or replace) the message for a reason code; used by code formats."""
    _MESSAGES[reason] = message


def known_reasons() -> tuple[str, ...]:
    """Every reason code with a message of its own (not a prefix's fallback)."""
    return tuple(_MESSAGES)


def message_for(reason: str) -> Message:
    """The visitor message for a reason code; never fails."""
    if reason in _MESSAGES:
        return _MESSAGES[reason]
    for prefix, message in _PREFIX_FALLBACKS.items():
        if reason.startswith(prefix):
            return message
    return _GENERIC
