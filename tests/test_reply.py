"""A flow's answer as data (bot.core.reply): the chat's rendering, `as_text`, writes every
text with choices byte for byte as people read it before choices were data (the texts
below are those of handlers/texts.py as they were), and composing keeps the choices of
the last part."""

from __future__ import annotations

import pytest

from bot.core.reply import Choice, Link, Reply, as_text
from handlers import texts

CASE = "(2026)冀1102民初1234号"


def numbered(*labels: str) -> tuple[Choice, ...]:
    return tuple(Choice(str(i), label) for i, label in enumerate(labels, start=1))


# (the reply as the flows build it, the chat text as it was written before)
AS_PEOPLE_READ_IT = {
    "menu": (
        Reply(texts.MENU_LEAD.format(case_number=CASE), texts.MENU_CHOICES),
        f"当前案件：{CASE}\n请回复数字选择：\n1 咨询法官\n2 投诉举报\n3 预约调解\n4 执行进度\n"
        "5 评价服务\n发送“我的诉求”查看办理情况",
    ),
    "menu, several cases": (
        Reply(texts.MENU_LEAD.format(case_number=CASE), (*texts.MENU_CHOICES, texts.MENU_SWITCH)),
        f"当前案件：{CASE}\n请回复数字选择：\n1 咨询法官\n2 投诉举报\n3 预约调解\n4 执行进度\n"
        "5 评价服务\n发送“我的诉求”查看办理情况\n发送“切换”更换案件",
    ),
    "confirm ask": (
        Reply(texts.CONFIRM_ASK_LEAD.format(said="开庭是哪天？"), texts.CONFIRM_ASK_CHOICES),
        "您是想问法官这个问题吗？\n“开庭是哪天？”\n回复数字：\n1 是，发给法官\n0 回菜单",
    ),
    "switch list": (
        Reply(
            texts.SWITCH_LIST_LEAD,
            numbered(f"{CASE}（当前）", "(2026)冀1102民初99号"),
            footer=texts.SWITCH_LIST_FOOTER,
        ),
        f"您验证过的案件：\n1 {CASE}（当前）\n2 (2026)冀1102民初99号\n请回复序号切换。",
    ),
    "digits only": (
        Reply(texts.DIGITS_ONLY_LEAD, texts.DIGITS_ONLY_CHOICES),
        "请输入4位数字，也就是登记手机号的最后四位。\n发送 0 可以取消。",
    ),
    "ask prompt": (
        Reply(texts.ASK_PROMPT_LEAD, (texts.TO_MENU,)),
        "请直接输入您要咨询的问题，一条消息说清楚就好。\n发送 0 返回菜单。",
    ),
    "complain about": (
        Reply(texts.COMPLAIN_ABOUT_LEAD, texts.COMPLAIN_ABOUT_CHOICES),
        "请问您要反映的是哪方面的问题？请回复数字：\n1 承办法官或工作人员\n2 办案流程或拖延\n"
        "3 对方当事人的行为\n4 其他问题\n发送 0 返回菜单。",
    ),
    "progress": (
        Reply(
            texts.PROGRESS_LEAD.format(
                case_number=CASE, lines="11月2日 立案", received="0.00元", paid="0.00元"
            ),
            texts.PROGRESS_CHOICES,
        ),
        f"执行案件 {CASE} 的进度：\n11月2日 立案\n\n已收到执行款：0.00元\n已发放给您：0.00元\n\n"
        "回复 1 提供财产线索\n发送 0 返回菜单。",
    ),
    "progress, none yet": (
        Reply(texts.PROGRESS_NONE_LEAD, texts.PROGRESS_CHOICES),
        "本案暂时还没有公开的执行进度。\n有新进展时会第一时间通知您。\n\n"
        "回复 1 提供财产线索\n发送 0 返回菜单。",
    ),
    "mediators": (
        Reply(
            texts.BOOK_MEDIATORS_LEAD,
            (*numbered("王芳（民间借贷） 最早可约 11月24日 周二 下午3:00", "孙丽 近两周已约满"),)
            + (texts.TO_MENU, texts.BOOK_CANCEL),
        ),
        "请选择调解员（回复序号）：\n1 王芳（民间借贷） 最早可约 11月24日 周二 下午3:00\n"
        "2 孙丽 近两周已约满\n发送 0 返回菜单。",
    ),
    "slots": (
        Reply(
            texts.BOOK_SLOTS_LEAD.format(name="李明"),
            (*numbered("11月25日 周三 上午9:30", "11月26日 周四 下午2:00"), texts.TO_MENU),
        ),
        "调解员李明可预约的时间（回复序号）：\n1 11月25日 周三 上午9:30\n2 11月26日 周四 下午2:00\n"
        "发送 0 返回菜单。",
    ),
    "book confirm": (
        Reply(
            texts.BOOK_CONFIRM_LEAD.format(when="11月25日 周三 上午9:30", name="李明"),
            texts.BOOK_CONFIRM_CHOICES,
        ),
        "您选择的是：\n11月25日 周三 上午9:30，调解员李明，远程视频调解。\n"
        "回复 1 确认预约，发送 0 返回菜单。",
    ),
    "rate pick": (
        Reply(
            texts.RATE_PICK_LEAD,
            (*numbered("咨询“开庭是哪天？”（已办结）"), texts.RATE_SERVICE, texts.TO_MENU),
        ),
        "请选择要评价的事项（回复序号）：\n1 咨询“开庭是哪天？”（已办结）\n9 评价本院的整体服务\n"
        "发送 0 返回菜单。",
    ),
    "rate score": (
        Reply(
            texts.RATE_SCORE_LEAD.format(what="这件事的办理"), (*texts.SCORE_CHOICES, texts.TO_MENU)
        ),
        "请为这件事的办理打分，回复数字：\n1 满意\n2 基本满意\n3 不满意\n发送 0 返回菜单。",
    ),
}


@pytest.mark.parametrize("name", AS_PEOPLE_READ_IT)
def test_the_chat_reads_a_reply_with_choices_as_it_always_has(name: str) -> None:
    reply, chat = AS_PEOPLE_READ_IT[name]
    assert as_text(reply) == chat


# The whole chat texts kept under their old names (templates still) are what they were.
WAS = {
    "CONFIRM_ASK": "您是想问法官这个问题吗？\n“{said}”\n回复数字：\n1 是，发给法官\n0 回菜单",
    "SWITCH_LIST": "您验证过的案件：\n{lines}\n请回复序号切换。",
    "DIGITS_ONLY": "请输入4位数字，也就是登记手机号的最后四位。\n发送 0 可以取消。",
    "ASK_PROMPT": "请直接输入您要咨询的问题，一条消息说清楚就好。\n发送 0 返回菜单。",
    "ASK_ADDED": "已补充到咨询 #{ticket}，会一并转给{who}。\n发送 0 返回菜单。",
    "COMPLAIN_ABOUT": "请问您要反映的是哪方面的问题？请回复数字：\n1 承办法官或工作人员\n"
    "2 办案流程或拖延\n3 对方当事人的行为\n4 其他问题\n发送 0 返回菜单。",
    "COMPLAIN_ADDED": "已补充到投诉 #{ticket}，督查室会一并办理。\n发送 0 返回菜单。",
    "PROGRESS": "执行案件 {case_number} 的进度：\n{lines}\n\n已收到执行款：{received}\n"
    "已发放给您：{paid}\n\n回复 1 提供财产线索\n发送 0 返回菜单。",
    "PROGRESS_NONE": "本案暂时还没有公开的执行进度。\n有新进展时会第一时间通知您。\n\n"
    "回复 1 提供财产线索\n发送 0 返回菜单。",
    "LEAD_PROMPT": "请告诉我们您知道的财产线索，例如：房产、车辆、银行账户、\n"
    "对方在哪里上班或做生意。也可以直接发照片。\n发送 0 返回菜单。",
    "LEAD_ADDED": "已补充到财产线索 #{ticket}。\n发送 0 返回菜单。",
    "BOOK_MEDIATORS": "请选择调解员（回复序号）：\n{lines}\n发送 0 返回菜单。",
    "BOOK_SLOTS": "调解员{name}可预约的时间（回复序号）：\n{lines}\n发送 0 返回菜单。",
    "BOOK_CONFIRM": "您选择的是：\n{when}，调解员{name}，远程视频调解。\n"
    "回复 1 确认预约，发送 0 返回菜单。",
    "RATE_PICK": "请选择要评价的事项（回复序号）：\n{lines}\n9 评价本院的整体服务\n发送 0 返回菜单。",
    "RATE_SCORE": "请为{what}打分，回复数字：\n1 满意\n2 基本满意\n3 不满意\n发送 0 返回菜单。",
    "RATE_ASK_AFTER_CLOSE": "您的{kind} #{ticket} 已办结。\n请为本次办理评价，回复数字：\n"
    "1 满意\n2 基本满意\n3 不满意",
}


@pytest.mark.parametrize("name", WAS)
def test_the_whole_chat_texts_are_unchanged(name: str) -> None:
    assert getattr(texts, name) == WAS[name]


def test_a_plain_reply_is_its_text() -> None:
    assert as_text(Reply(texts.VERIFIED)) == texts.VERIFIED  # trailing blank line and all
    assert as_text(Reply("")) == ""


def test_composing_keeps_the_words_of_all_and_the_choices_of_the_last() -> None:
    menu = Reply(texts.MENU_LEAD.format(case_number=CASE), texts.MENU_CHOICES)
    switched = texts.SWITCHED.format(case_number=CASE)

    joined = Reply(switched, item="case:1") + menu
    assert joined.text == switched + menu.text
    assert joined.choices == texts.MENU_CHOICES
    assert joined.item == "case:1"  # the menu names nothing: the earlier part's item stays
    assert as_text(joined) == switched + as_text(menu)
    plain = Reply(switched + menu.text, texts.MENU_CHOICES)
    assert switched + menu == plain == Reply(switched).then(menu)  # a plain text in front

    # An earlier part's choices stay in the words as the chat writes them; only the
    # last part's are offered.
    asked = Reply(texts.ASK_PROMPT_LEAD, (texts.TO_MENU,), links=(Link("回执", "http://a/v/1"),))
    after = asked + Reply("补充：", links=(Link("调解室", "http://b/r"),), item="booking:3")
    assert after.text == texts.ASK_PROMPT + "补充："
    assert after.choices == ()
    assert after.links == (Link("回执", "http://a/v/1"), Link("调解室", "http://b/r"))
    assert after.item == "booking:3"
    assert as_text(asked + "谢谢") == texts.ASK_PROMPT + "谢谢"


def test_choices_said_in_the_words_are_offered_but_not_written_twice() -> None:
    confirm = Reply("您选择的是：…", texts.BOOK_CONFIRM_CHOICES)
    assert [(c.key, c.label) for c in confirm.choices] == [("1", "确认预约"), ("0", "返回菜单")]
    assert as_text(confirm).count("0 返回菜单") == 1
