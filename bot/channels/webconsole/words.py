"""What the staff console says: short, polite, plain. Where the chat already has the words
(handlers.texts: kinds, statuses, titles, what a claim or transfer answers), the console
uses those; these are only what a page needs and the chat does not."""

from __future__ import annotations

from handlers import texts

APP = "码上通工作台"

# -- signing in ----------------------------------------------------------------------------
LOGIN_TITLE = "工作人员登录"
USERNAME = "用户名"
PASSWORD = "密码"
LOGIN_BUTTON = "登录"
LOGIN_FAILED = "用户名或密码不对，请再试一次。"
LOCKED = "尝试次数太多，为保护账号安全，请15分钟后再试。如需帮助，请联系本院管理员。"
BUSY = "正在核对上一次登录，请稍等几秒再试。"
CODE_TITLE = "输入动态验证码"
CODE_LABEL = "验证器里显示的6位数字"
CODE_BUTTON = "确认"
CODE_WRONG = "验证码不对，请看清后重新输入。"
CODE_EXPIRED = "登录已超时，请重新输入用户名和密码。"
SIGNED_OUT = "您已安全退出。"
SESSION_ENDED = "登录已过期，请重新登录。"
NO_PASSWORD_HINT = "还没有密码？请向本院管理员索取设置链接。"

# -- the set-up link -------------------------------------------------------------------------
SETUP_TITLE = "设置登录密码"
SETUP_FOR = "为 {name}（{username}）设置网页工作台的登录密码。"
NEW_PASSWORD = "新密码（至少10位）"
AGAIN = "再输入一次"
SETUP_BUTTON = "设置密码"
SETUP_BAD_TITLE = "链接无效"
SETUP_BAD = "这个设置链接无效、已经用过或已过期。请向本院管理员重新获取。"
PASSWORD_SET = "密码已设置好，请登录。"
PASSWORD_ERRORS = {
    "too_short": "密码至少需要10位。",
    "too_long": "密码太长了，请不要超过200位。",
    "is_username": "密码不能和用户名相同。",
    "mismatch": "两次输入的密码不一致。",
}

# -- every page ----------------------------------------------------------------------------
INBOX = "待办"
DESK = "服务台"
SIGN_OUT = "退出"
SIGNED_IN_AS = "{name}（{username}）"
FORM_EXPIRED_TITLE = "页面已过期"
FORM_EXPIRED = "这个页面已经过期，没有做任何改动。请返回后刷新页面再操作。"
NOT_FOUND_TITLE = "没有找到"
NOT_FOUND = "没有找到您可以查看的这个事项。"
BACK_INBOX = "返回待办"
UNAVAILABLE_TITLE = "暂时无法使用"
UNAVAILABLE = "系统暂时无法处理，请稍后刷新页面再试。"
TO_LOGIN = "重新登录"

# -- the inbox -------------------------------------------------------------------------------
INBOX_TITLE = "我的待办"
VIEWS = {
    "all": "全部",
    "mine": "我办理的",
    "unclaimed": "待认领",
    "complaints": "投诉举报",
    "team": "本庭事项",
}
STATUSES = {
    "todo": "未办结",
    "open": "待答复",
    "answered": "已答复",
    "closed": "已办结",
    "all": "全部状态",
}
SEARCH = "案号或事项编号（如 #12）"
SEARCH_BUTTON = "查找"
SHOW = "范围"
STATUS = "状态"
NOTHING = "没有符合条件的事项。"
PAGES = "翻页"
PREVIOUS = "上一页"
NEXT = "下一页"
PAGE = "第 {page} 页（第 {first}–{last} 件）"
COLUMNS = ("编号", "类别", "案号与诉求", "当事人", "状态", "办理人", "答复期限", "")
CLAIM = "认领"
OPEN = "查看"
OVERDUE = "已超期"
DUE_SOON = "即将到期"
REPLIED = "已首次答复"
NO_DUE = "—"
RELATIONS = {
    "holder": "我办理",
    "supporter": "协助办理",
    "inbox": "团队",
    "unclaimed": "待认领",
    "leader": "本庭",
}
LEGEND_OVERDUE = "已超过答复期限"
LEGEND_SOON = "4个工作小时内到期"

# -- an item ---------------------------------------------------------------------------------
FACTS = "事项信息"
CASE = "案件"
CASE_NUMBER = "案号"
CASE_TYPE = "案件类型"
CAUSE = "案由"
JUDGE = "承办人"
PARTIES = "当事人"
RAISED_BY = "提出人"
KIND = "类别"
ABOUT = "投诉对象"
NAMED = "被投诉人"
HOLDER = "现办理人"
LEVEL = "升级次数"
CREATED = "提交时间"
DUE = "首次答复期限"
PROMISED = "承诺答复时间"
CLOSE_DUE = "办结期限"
FIRST_REPLY = "首次答复时间"
REPLIED_AT = "已于 {at} 首次答复"
THREAD = "往来记录"
NO_THREAD = "还没有消息。"
SEE_PHOTO = "查看照片"
HEAR_VOICE = "收听语音"
HISTORY = "办理经过"
HISTORY_COLUMNS = ("时间", "经过", "操作人", "交给", "原因")
HISTORY_WORDS = texts.HISTORY_WORDS
ACTORS = {"system": "系统", "admin": "管理员", "import": "导入"}
LEVEL_N = "第{level}级"
ANSWER = "答复当事人"
ANSWER_HINT = "答复会通过公众号发给当事人，并记入办理记录。"
ANSWER_BUTTON = "发送答复"
ANSWER_EMPTY = "请先填写答复内容。"
CLOSE = "办结"
CLOSE_HINT = "办结后会通知当事人，并请他评价。"
CLOSE_BUTTON = "办结此事项"
CLAIM_HINT = "这件事项在团队待办里，还没有人认领。"
TRANSFER = "转办"
TRANSFER_TO = "转给"
TRANSFER_PICK = "请选择"
TRANSFER_REASON = "原因（会告诉对方）"
TRANSFER_BUTTON = "转办"
TRANSFER_NOBODY = "本院没有可以接手这件事项的人。"
ESCALATE = "上报升级"
ESCALATE_HINT = "交上一级办理：{to}。对方会收到通知和您写的原因。"
ESCALATE_REASON = "上报原因（必填，只给本院工作人员看）"
ESCALATE_BUTTON = "上报升级"
ESCALATE_NO_REASON = "请写明上报的原因。"
ESCALATED = "#{ticket} 已上报，现由{to}办理。"
ESCALATE_NOT = {
    "at_top": "这件事项已在最高一级，不能再上报。",
    "nobody": "上一级暂时没有可以接手的人，无法上报。请联系本院管理员。",
}
ESCALATED_BY_HAND = "上报升级"
CLOSED_NOTE = "此事项已办结。"
VIEW_ONLY = "您可以查看这件事项，办理由承办人负责。"

# -- the service desk ------------------------------------------------------------------------
DESK_TITLE = "诉讼服务台"
DESK_INTRO = "为到窗口来的当事人查找案件。"
DESK_CASE = "案号"
DESK_BUTTON = "查找"
DESK_NONE = "本院没有找到这个案号，请核对后再输入（括号、年份和字号都要一致）。"
DESK_ASSISTED = "代为办理（陪诉访导）功能将在后续版本提供；目前请引导当事人扫描案件二维码。"
DESK_ONLY = "服务台页面供诉讼服务中心的工作人员使用。"
DESK_ONLY_TITLE = "无法使用服务台"
PHONE = "登记手机"
ROLE = "诉讼地位"
NAME = "姓名"
