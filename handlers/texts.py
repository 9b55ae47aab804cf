"""What people read, in one place: short, polite, numbered, for elderly readers too.

A text that offers choices is kept in parts: its lead (`X_LEAD`), its choices as data
(`X_CHOICES`, bot.core.reply.Choice) and, under its old name `X`, the whole of it as the
chat reads it (bot.core.reply.as_text), for notices and for those who compare chat text."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from bot.core.clock import say_time
from bot.core.reply import Choice, Reply, as_text
from bot.core.text import gist as gist  # flows cut quotes beside the words they go in
from bot.rules import tickets
from storage.models import Court, Staff, Ticket


def chat(lead: str, *choices: Choice, footer: str = "") -> str:
    """A lead and its choices as one chat text (still a template when the lead is one)."""
    return as_text(Reply(lead, choices, footer=footer))


# "发送 0 返回菜单。" on a line of its own; TO_MENU_SAID: where the words already say it.
TO_MENU = Choice("0", "返回菜单", chat="发送 0 返回菜单。")
TO_MENU_SAID = Choice("0", "返回菜单", chat="")
# In a chat template, where a numbered list's lines go: `.format(lines="1 …\n2 …")`.
LINES = Choice("", "", chat="{lines}")
# What links are called where a channel shows them on their own (bot.core.reply.Link).
RECEIPT = "回执"
ROOM = "进入调解室"


def call(court: Court | None) -> str:
    """Where a text says "call the court": with the number when the court has given one."""
    phone = court.phone if court else None
    return f"拨打法院诉讼服务电话（{phone}）" if phone else "拨打法院诉讼服务电话"


def desk(court: Court | None) -> str:
    """The court's service desk, with where, when and its phone, as far as the court has said."""
    name = court.name if court else "法院"
    known = [
        v
        for v in (
            court.address if court else None,
            court.hours if court else None,
            f"电话 {court.phone}" if court and court.phone else None,
        )
        if v
    ]
    return f"{name}诉讼服务中心" + (f"（{'，'.join(known)}）" if known else "")


# -- the rules' codes, named -------------------------------------------------------------

# An item's kind and status (bot.rules.tickets), as people read them.
KIND_NAMES = {
    "question": "咨询",
    "complaint": "投诉举报",
    "mediation": "调解预约",
    "asset_lead": "财产线索",
}
STATUS_NAMES = {"open": "待答复", "answered": "已答复", "closed": "已办结"}


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, "诉求")


def status_name(status: str) -> str:
    return STATUS_NAMES.get(status, status)


# A staff member's title by the role they are titled by (bot.rules.tickets.title_role).
TITLES = {
    "judge": "法官",
    "enforcement": "执行员",
    "clerk": "书记员",
    "mediator": "调解员",
    "supervision": "督查室",
    "reception": "接待员",
}
# A team inbox holding an item, as the litigant is told.
WHO = {"supervision": "法院督查室", "reception": "法院接待人员", "admin": "法院领导"}


def title_of(role: str | None) -> str:
    return TITLES.get(role or "", "工作人员")


def staff_title(staff: Staff) -> str:
    return title_of(tickets.title_role(staff))


def say_holder(name: str | None, role: str | None, inbox: str | None) -> str:
    """A holder as the litigant is told: a person by title and name, or a team inbox."""
    if name is not None:
        return f"{title_of(role)}{name}"
    return WHO.get(inbox or "", "法院工作人员")


def holder_words(ticket: Ticket, assignee: Staff | None) -> str:
    """Who is handling an item, as the litigant is told."""
    return say_holder(
        assignee.name if assignee else None,
        tickets.title_role(assignee) if assignee else None,
        ticket.inbox,
    )


def due_words(ticket: Ticket) -> str:
    return say_time(ticket.due_at) if ticket.due_at else "尽快"


# Why an item moved to another holder (bot.rules.escalation's reason codes). A reason kept
# before the codes (its words) is shown as it was kept.
MOVE_REASONS = {
    "overdue": "到期未答复，升级办理",
    "away": "承办人请假",
    "silent": "承办人长时间未答复",
    "claimed": "认领",
    "transferred": "转办",
    "requested": "工作人员上报升级",
}


def move_reason(reason: str, note: str | None = None) -> str:
    """Why an item moved: the staff member's own words (`note`, a transfer's) or its reason."""
    return note or MOVE_REASONS.get(reason, reason)


# Under a photo or voice message a litigant sent (bot.rules.media): where staff see or hear it.
MEDIA_WORDS = {"image": "照片", "voice": "语音"}


def media_line(kind: str, url: str) -> str:
    return f"（{'查看' if kind == 'image' else '收听'}{MEDIA_WORDS.get(kind, '附件')}：{url}）"


WELCOME = (
    "您好，这里是法院“码上通”。\n"
    "请用微信扫一扫案件材料上的二维码，\n"
    "或直接发送二维码下方的10位案件码。"
)
CODE_OK = "您好！{how}：\n{court}\n{case_number}（{cause}）\n"
CODE_SCANNED = "您扫描的是"
CODE_TYPED = "这个案件码对应的是"
ASK_DIGITS = "为确认您的身份，请输入本案登记的手机号码后四位。"
CODE_REVOKED = "这个二维码已经停用了。\n请向法院索取新的二维码，或{call}咨询。"
CODE_UNKNOWN = "没有找到这个案件码。\n请核对二维码下方的10位案件码后重新发送。"
# A code of a court another Official Account serves (bot.rules.accounts): nothing of it shown.
CODE_OTHER_ACCOUNT = (
    "这个案件由{court}办理，请在{account}里扫码或发送案件码。\n本公众号只办理它所服务法院的案件。"
)
STAFF_OTHER_ACCOUNT = "您是{court}的工作人员，请在{account}里发送绑定码。"


def account_words(name: str | None, court: str) -> str:
    """The account a person is sent to, as they would search for it."""
    return f"“{name}”公众号" if name else f"{court}的微信公众号"


CODE_MISTYPED = "案件码好像输错了一位。\n请对照材料再输入一次（字母不分大小写）。"
UNSUPPORTED = "抱歉，目前只能接收文字消息。\n请用文字告诉我们您的问题，谢谢。"
SLOW_DOWN = "您发送得太快了，请稍等一分钟再发。\n您刚才的消息我们已经收到。"
BUSY = "您的消息已收到，系统正忙，稍后会有人回复您。"

# verification
DIGITS_ONLY_LEAD = "请输入4位数字，也就是登记手机号的最后四位。"
DIGITS_ONLY_CHOICES = (Choice("0", "取消", chat="发送 0 可以取消。"),)
DIGITS_ONLY = chat(DIGITS_ONLY_LEAD, *DIGITS_ONLY_CHOICES)
VERIFIED = "验证成功！您是本案的{role}{name}。\n\n"
WRONG_DIGITS = "号码不对，请再试一次。\n还可以再试 {left} 次。"
LOCKED = "输错次数太多了，为保护您的案件信息，请1小时后再试。\n如需帮助，请到{desk}。"
CASE_PAUSED = (
    "为保护案件信息，这个案件的手机号验证暂时停用了，请1小时后再试。\n"
    "也可以带上身份证到{desk}，工作人员会当面帮您办理。"
)
CASE_PAUSED_NOTICE = (
    "安全提醒：案件 {case_number} 的手机号验证1小时内错了{n}次，可能有人在猜号码，"
    "已暂停该案验证1小时。当事人本人可到诉讼服务中心当面办理。"
)
ALREADY_BOUND = "您已经验证过这个案件了。\n\n"

# menu
MENU_LEAD = "当前案件：{case_number}\n请回复数字选择："
MENU_CHOICES = (
    Choice("1", "咨询法官"),
    Choice("2", "投诉举报"),
    Choice("3", "预约调解"),
    Choice("4", "执行进度"),
    Choice("5", "评价服务"),
    Choice("我的诉求", "查看办理情况", chat="发送“我的诉求”查看办理情况"),
)
MENU_SWITCH = Choice("切换", "更换案件", chat="发送“切换”更换案件")  # with more than one case
MENU = chat(MENU_LEAD, *MENU_CHOICES)  # with one case
CONFIRM_ASK_LEAD = "您是想问法官这个问题吗？\n“{said}”\n回复数字："
CONFIRM_ASK_CHOICES = (Choice("1", "是，发给法官"), Choice("0", "回菜单"))
CONFIRM_ASK = chat(CONFIRM_ASK_LEAD, *CONFIRM_ASK_CHOICES)
HOW_TO_REACH_A_PERSON = (
    "需要人工帮助的话，请发送数字 1，再写下您的问题，\n"
    "会转给承办法官或接待人员，并按时答复您。\n"
    "也可以到{desk}，工作人员会当面帮您。\n\n"
)
SWITCH_LIST_LEAD = "您验证过的案件："
SWITCH_LIST_FOOTER = "请回复序号切换。"
SWITCH_LIST = chat(SWITCH_LIST_LEAD, LINES, footer=SWITCH_LIST_FOOTER)
SWITCHED = "已切换到：{case_number}\n\n"
NO_TICKETS = "您在本案还没有提交过诉求。\n\n"
MY_TICKETS = "您在本案的诉求：\n{lines}\n\n"

# ask
ASK_PROMPT_LEAD = "请直接输入您要咨询的问题，一条消息说清楚就好。"
ASK_PROMPT = chat(ASK_PROMPT_LEAD, TO_MENU)
ASK_RECEIVED = (
    "已收到您的咨询，编号 #{ticket}。\n"
    "{who}会在 {due} 前答复您。\n"
    "回执：{receipt}\n（点开可以核对法院的记录）\n"
    "如需补充，直接发送即可；发送 0 返回菜单。"
)
ASK_ADDED_LEAD = "已补充到咨询 #{ticket}，会一并转给{who}。"
ASK_ADDED = chat(ASK_ADDED_LEAD, TO_MENU)

# staff
STAFF_BOUND = (
    "绑定成功！{name}（{username}），您好。\n当事人的诉求会发到这里。\n发送“待办”查看待处理事项。"
)
BIND_CODE_BAD = "这个绑定码无效或已经用过了。\n请向管理员重新获取。"
BIND_PAUSED = "绑定码输错次数太多，已暂停绑定，请1小时后再试。\n如需帮助，请联系本院管理员。"
STAFF_HELP = (
    "工作人员可用的指令：\n"
    "待办 —— 查看待处理事项\n"
    "#编号 回复内容 —— 答复当事人\n"
    "#编号 结 —— 办结该事项\n"
    "#编号 认领 —— 认领团队待办\n"
    "#编号 转 姓名 原因 —— 转给其他工作人员\n"
    "请假 至 {example} / 在岗 —— 登记不在岗、恢复在岗\n"
    "未到 预约号 —— （调解员）记录当事人未到场\n"
    "代办 / 结束代办 —— （导诉、窗口）为来到窗口的当事人代为办理"
)
STAFF_NO_TICKET = "没有找到您可以办理的 #{ticket}。\n发送“待办”查看您的事项。"
STAFF_CANNOT = "#{ticket} 您可以查看，但这一步需要由承办人办理。"
LEADER_ONLY_REASSIGN = "#{ticket} 由庭里的同事承办，您可以查看和改派：\n#{ticket} 转 姓名 原因"
STAFF_TOO_FAST = "发送太快了，这一条没有发出：\n{text}\n请稍等一分钟后重发。"
STAFF_ANSWERED = "已将您的答复发给当事人（#{ticket}）。"
STAFF_CLOSED = "#{ticket} 已办结，已通知当事人。"
STAFF_ALREADY_CLOSED = "#{ticket} 已经办结了。"
# the service desk (代办, bot.rules.desk): to the staff member helping someone in person
DESK_NOT_ALLOWED = "代办需要导诉或窗口工作人员的账号。如需开通，请联系本院管理员。"
DESK_ALREADY = "您正在为{name}代办。请先发送“结束代办”，再为下一位办理。"
DESK_SCAN = "请用手机扫当事人的案件二维码，或输入案件码。\n发送“取消”不办了。"
DESK_CODE_BAD = "没有找到这个案件码。请再扫一次，或核对后重新输入。\n发送“取消”不办了。"
DESK_OTHER_COURT = "这个案件不是本院的，不能在这里代办。"
DESK_CHOOSE_PARTY = "案号：{case_number}\n请问来办理的是哪一位？回复序号："
DESK_DIGITS = (
    "请当事人出示身份证，核对是本人后，\n请当事人说出登记手机号的后四位，您输入这4位数字。"
)
DESK_DIGITS_WRONG = "手机号后四位不对。请当事人再说一遍，您重新输入4位数字。\n发送“取消”不办了。"
DESK_CONSENT = (
    "请向当事人读以下内容：\n“{statement}”\n\n已核对身份证件、当事人同意的，回复1；\n"
    "当事人不同意的，回复2。"
)
DESK_NO_CONSENT = "当事人没有同意，不能代为办理。"
DESK_CANCELLED = "已取消代办。"
DESK_OPEN = (
    "已开始为{role}{name}代办（案号：{case_number}）。\n"
    "接下来您发的消息都算当事人本人办理，并记录由您代办。\n"
    "发送“菜单”查看可以办的事；办完请发送“结束代办”。30分钟不操作会自动结束。"
)
DESK_ENDED = "已结束为{name}代办。"
DESK_NONE = "您现在没有在代办。"
DESK_CLOSED = "这次代办已经结束了，刚才这一条没有办理。如需继续，请重新开始代办。"
DESK_ENDED_BY_ITSELF = (
    "代办已结束（超过30分钟没有操作），刚才这一条没有办理。\n现在是以您自己的身份使用。"
)
DESK_ONE_CASE = "代办时只能办理这一个案件。如需办理其他案件，请先结束代办。"
DESK_REFUSED = {
    "role": DESK_NOT_ALLOWED,
    "party": "没有找到这位当事人，请重新开始代办。",
    "consent": DESK_NO_CONSENT,
    "id": "请先核对当事人的身份证件。",
    "busy": "您正在为另一位当事人代办。请先结束，再为下一位办理。",
    "taken": "这位当事人正在由{helper}代办，不能同时由两人代办。",
    "locked": "这个案件手机号输错次数太多，请1小时后再试，或请当事人用其他方式核实。",
    "digits": DESK_DIGITS_WRONG,
}


def desk_refused(reason: str, helper: str | None = None) -> str:
    return DESK_REFUSED.get(reason, DESK_NOT_ALLOWED).format(helper=helper or "其他工作人员")


# An answer kept at the desk for someone without WeChat: who helped them is told.
DESK_ANSWER_KEPT = "{name}的{kind} #{ticket} 有答复了，已放在代办台，请打印交给当事人或电话告知。"
# What the person reads later of an item staff submitted for them.
SUBMITTED_BY_STAFF = "由工作人员{name}代为提交"
# a receipt checked (its page, and the chat when one is sent back)
RECEIPT_RECORDED = "{court}已记录您的{kind}{number}。\n案号：{case_number}\n时间：{at}"
RECEIPT_NUMBER = "（编号 #{ticket}）"
RECEIPT_INTACT = "✔ 核对无误：这条记录从生成到现在没有被改动过。"
RECEIPT_BROKEN = "核对发现本案的记录有异常，法院已收到提醒。请到诉讼服务中心咨询。"
RECEIPT_UNKNOWN = (
    "没有找到这份回执。请核对链接是否完整。\n回执是您提交咨询、投诉或线索时收到的那条链接。"
)
# the receipt's page: the court's public (transparency) log, and the check the phone makes
RECEIPT_LOGGED = "已写入法院公开日志（第 {index} 条，日志共 {size} 条，签名时间 {at}）。"
RECEIPT_NOT_LOGGED = "将在1分钟内写入法院公开日志，请稍后刷新。"
RECEIPT_LOG_DAMAGED = "法院公开日志暂时无法核对，法院已收到提醒。请到诉讼服务中心咨询。"
RECEIPT_NOTICE = (
    "可与法院公告栏上的日志摘要核对：{when} 共 {size} 条 根 {root}（公钥编号 {key_id}）"
)
RECEIPT_PUBLISHED = "这份日志摘要法院已于 {date} 公布，公告栏上应有同样的一行。"
RECEIPT_NOT_PUBLISHED = (
    "这份日志摘要法院还没有公布（一般每天公布一次）；公布后再打开本页，即可与公告栏对照。"
)
RECEIPT_CHECKING = "正在用您的手机核对……"
RECEIPT_NO_SCRIPT = "您的浏览器没有运行核对程序，请以上面的结果为准。"
RECEIPT_VERIFIED = "✔ 您的手机已独立核对：这条记录在法院签名的日志里。"
RECEIPT_FAILED = "✘ 核对未通过：{reason}（请到诉讼服务中心咨询）"
RECEIPT_FAILED_RECEIPT = "日志里的记录与您的回执号不符。"
RECEIPT_FAILED_PROOF = "日志的证明与签名的日志摘要对不上。"
RECEIPT_FAILED_SIGNATURE = "日志摘要的签名不是法院公钥的签名。"
RECEIPT_FAILED_KEY = "没有找到法院的公钥。"
RECEIPT_CANNOT_CHECK = "您的手机浏览器不支持独立核对，请以上面的结果为准，或换一个浏览器打开。"

# the thread staff read (#n)
A_PARTY = "当事人"
THE_COURT = "法院"
NO_MESSAGES_YET = "（还没有消息）"
ERASED = "（此条内容已依法删除）"


def unsaid(msg_type: str) -> str:
    """What stands for a message with no text: a photo, a voice message, or a text erased
    by law (a text message is never stored empty otherwise)."""
    if msg_type == "text":
        return ERASED
    return "[照片]" if msg_type == "image" else "[语音]"


STAFF_THREAD = "#{ticket} {kind}（{status}）\n{thread}\n\n答复请发送：#{ticket} 答复内容"
STAFF_TODO_EMPTY = "目前没有待处理的事项。"
STAFF_TODO = "待处理事项（最早的在前）：\n{lines}"

# complaints
COMPLAIN_ABOUT_LEAD = "请问您要反映的是哪方面的问题？请回复数字："
COMPLAIN_ABOUT_CHOICES = (
    Choice("1", "承办法官或工作人员"),
    Choice("2", "办案流程或拖延"),
    Choice("3", "对方当事人的行为"),
    Choice("4", "其他问题"),
    TO_MENU,
)
COMPLAIN_ABOUT = chat(COMPLAIN_ABOUT_LEAD, *COMPLAIN_ABOUT_CHOICES)
COMPLAIN_PROMPT = (
    "请写下具体情况：什么时间、发生了什么、您希望怎么处理。\n一条消息写完即可。发送 0 返回菜单。"
)
COMPLAIN_RECEIVED = (
    "已收到您的投诉，编号 #{ticket}。\n"
    "由法院督查室负责办理，会在 {due} 前答复您。\n"
    "回执：{receipt}\n（点开可以核对法院的记录）\n"
    "您的身份只有督查室工作人员能看到。\n"
    "如需补充，直接发送即可；发送 0 返回菜单。"
)
COMPLAIN_ADDED_LEAD = "已补充到投诉 #{ticket}，督查室会一并办理。"
COMPLAIN_ADDED = chat(COMPLAIN_ADDED_LEAD, TO_MENU)
COMPLAIN_CAP = (
    "您今天已经提交过投诉了。为保证每件投诉都认真办理，同一案件每天最多提交{limit}件。\n"
    "{day}起可以再提交。情况紧急的，请{call}。\n\n"
)
COMPLAIN_MESSAGE_CAP = (
    "今天关于投诉的补充已经达到{limit}条。\n{day}起可以继续补充。情况紧急的，请{call}。"
)

# enforcement
PROGRESS_LEAD = (
    "执行案件 {case_number} 的进度：\n{lines}\n\n已收到执行款：{received}\n已发放给您：{paid}\n"
)
PROGRESS_NONE_LEAD = "本案暂时还没有公开的执行进度。\n有新进展时会第一时间通知您。\n"
PROGRESS_CHOICES = (Choice("1", "提供财产线索", chat="回复 1 提供财产线索"), TO_MENU)
PROGRESS = chat(PROGRESS_LEAD, *PROGRESS_CHOICES)
PROGRESS_NONE = chat(PROGRESS_NONE_LEAD, *PROGRESS_CHOICES)
LEAD_PROMPT_LEAD = (
    "请告诉我们您知道的财产线索，例如：房产、车辆、银行账户、\n"
    "对方在哪里上班或做生意。也可以直接发照片。"
)
LEAD_PROMPT = chat(LEAD_PROMPT_LEAD, TO_MENU)
LEAD_RECEIVED = (
    "已收到您的财产线索，编号 #{ticket}。\n"
    "{who}会在 {due} 前核实并答复您。\n"
    "回执：{receipt}\n（点开可以核对法院的记录）\n"
    "还有补充（文字或照片）可以继续发送；发送 0 返回菜单。"
)
LEAD_ADDED_LEAD = "已补充到财产线索 #{ticket}。"
LEAD_ADDED = chat(LEAD_ADDED_LEAD, TO_MENU)
PHOTO = "[照片]"

# mediation
BOOK_MEDIATORS_LEAD = "请选择调解员（回复序号）："
BOOK_MEDIATORS = chat(BOOK_MEDIATORS_LEAD, LINES, TO_MENU)
BOOK_NO_MEDIATORS = "本院暂时没有可以预约的调解员。\n请{call}咨询。\n\n"
BOOK_CURRENT = (
    "您已预约：{when}，调解员{name}。\n回复“取消”可以取消预约；重新选择时间即为改约。\n\n"
)
BOOK_CANCEL = Choice("取消", "取消预约", chat="")  # BOOK_CURRENT says it
BOOK_SLOTS_LEAD = "调解员{name}可预约的时间（回复序号）："
BOOK_SLOTS = chat(BOOK_SLOTS_LEAD, LINES, TO_MENU)
BOOK_NO_SLOTS = "调解员{name}近两周已经约满了，请选择其他调解员。\n\n"
BOOK_CONFIRM_LEAD = "您选择的是：\n{when}，调解员{name}，远程视频调解。"
BOOK_CONFIRM_CHOICES = (
    Choice("1", "确认预约", chat="回复 1 确认预约，发送 0 返回菜单。"),
    TO_MENU_SAID,
)
BOOK_CONFIRM = chat(BOOK_CONFIRM_LEAD, *BOOK_CONFIRM_CHOICES)
BOOK_DONE = (
    "预约成功！\n时间：{when}\n调解员：{name}\n"
    "到时请点击链接进入调解室：{link}\n"
    "我们会在前一天和开始前一小时提醒您。双方当事人和承办法官都会收到通知。"
)
BOOK_MOVED = "已为您改约，原来 {was} 的预约已取消。\n"
BOOK_TAKEN = "很抱歉，这个时间刚刚被别人约走了。\n\n"
BOOK_CANCELLED = "已为您取消预约，并通知了对方当事人和法官。\n\n"
BOOK_TOO_LATE = "离开始不到2小时，已经不能在这里取消或改约了。\n如有特殊情况，请{call}。\n\n"

# rating
RATE_PICK_LEAD = "请选择要评价的事项（回复序号）："
RATE_SERVICE = Choice("9", "评价本院的整体服务")
RATE_PICK = chat(RATE_PICK_LEAD, LINES, RATE_SERVICE, TO_MENU)
RATE_NOTHING_YET = "您在本案还没有办结的事项。\n"
SCORE_CHOICES = (Choice("1", "满意"), Choice("2", "基本满意"), Choice("3", "不满意"))
RATE_SCORE_LEAD = "请为{what}打分，回复数字："
RATE_SCORE = chat(RATE_SCORE_LEAD, *SCORE_CHOICES, TO_MENU)
RATE_THANKS = "谢谢您的评价！\n还有想说的话，可以直接发送；不需要的话发送 0 返回菜单。\n（一天之内可以修改评价）"
RATE_COMMENT_SAVED = "您的意见已经记下，谢谢！\n\n"
RATE_TOO_LATE = "这件事项的评价已经超过一天，不能再修改了。谢谢您！\n\n"
# The app's own words (mini-program, H5): one screen, one action, no menu numbers.
PHONE_NOT_ON_CASE = (
    "您微信绑定的手机号不是本案登记的号码。请改用登记手机号的后四位核验，或到诉讼服务中心办理。"
)
APP_ADDED = "已补充到 #{ticket}，会一并转给办理人。"
APP_ITEM_CLOSED = "#{ticket} 已经办结，不能再补充。有新的问题，请重新提交一件。"
APP_RATED = "谢谢您的评价！一天之内可以修改。"
APP_RATED_WITH_COMMENT = "谢谢您的评价，您的意见已经记下！"
RATE_ASK_AFTER_CLOSE_LEAD = "您的{kind} #{ticket} 已办结。\n请为本次办理评价，回复数字："
RATE_ASK_AFTER_CLOSE = chat(RATE_ASK_AFTER_CLOSE_LEAD, *SCORE_CHOICES)  # a notice: chat text
NO_SHOW_RECORDED = "已记录该预约当事人未到场。"
NO_SHOW_BAD = "没有找到这个已开始的、由您主持的预约。"

# absence, claims, transfers
AWAY_SET = "已登记：您 {until} 前不在岗。期间新的事项会转给法院接待人员，已有的事项也会陆续转过去。\n回来后发送“在岗”。"
AWAY_BAD = "请这样写：请假 至 {example}"
BACK = "欢迎回来，已恢复在岗。新的事项会直接发给您。"
CLAIMED = "#{ticket} 已由您认领，请尽快答复。"
CLAIM_TAKEN = "#{ticket} 已经被{name}认领了。"
CLAIM_NOT_TEAM = "#{ticket} 不在您团队的待办里，不能认领。"
TRANSFER_BAD = "请这样写：#{ticket} 转 姓名 原因"
TRANSFER_NO_STAFF = "本院没有找到工作人员“{username}”。\n请写对方的姓名或用户名。"
TRANSFER_WHICH = "本院有不止一位“{name}”，请按下面的写法选一位：\n{lines}"
TRANSFER_COMPLAINT = "#{ticket} 是投诉，只能在督查室内部或向院领导转办，不能转给{name}。"
TRANSFER_NOT_ALLOWED = "#{ticket} 不能转给{name}：转过去后对方无法办理。"
TRANSFERRED = "#{ticket} 已转给{name}，并告知了当事人。"

# notices: what the rules tell people through the outbox (bot.core.notice), put into words
# by handlers.notices. `*_TITLE`: the one line a template message leads with when WeChat's
# 48-hour window has closed (NEW_MESSAGE when a notice has none of its own).
NEW_MESSAGE = "您有一条新消息"
TEMPLATE_REMARK = "点击查看详情。"
ABOUT_CASE = "关于案件 {case_number}：\n"  # before a push about a case the person is not on
SOMEONE = "当事人"  # a litigant the notice cannot name
# To the staff who hold an item: new, added to, or moved to them.
STAFF_ITEM_NEW = "新{kind} #{ticket}"
STAFF_ITEM_ADDED = "#{ticket} 补充"
STAFF_ITEM_MOVED = "{kind} #{ticket}"
STAFF_ITEM = "{head}\n案号：{case_number}\n{who}：{text}\n回复请发送：#{ticket} 回复内容"
STAFF_ITEM_MOVED_WHY = "转给您的事项（{reason}）：\n"
STAFF_WARNED = "提醒：#{ticket}（{case_number}）将于 {due} 到期，请尽快答复。"
STAFF_DIGEST = "早上好，{name}。您有 {count} 件待办，其中今天到期 {due_today} 件：\n{lines}"
STAFF_DIGEST_LINE = "#{ticket} {case_number} {status}"
STAFF_DIGEST_DUE = "，{due}到期"
# To the litigant.
ITEM_MOVED_TITLE = "#{ticket} 办理人变更"
ITEM_MOVED = "您的{kind} #{ticket} 现由{holder}办理"
ITEM_MOVED_DUE = "，会在 {due} 前答复您。"
ITEM_MOVED_END = "。"
ANSWERED_TITLE = "#{ticket} 有新的答复"
ANSWERED = "{title}{name}回复 #{ticket}：{text}"
CLOSED_TITLE = "#{ticket} 已办结"
# Remote mediation: to the parties, and to the mediator and the judge.
MEDIATION_TITLE = "远程调解预约"
MEDIATION_BOOKED = "本案已预约远程调解：{when}，调解员{name}。\n到时请点击链接进入调解室：{link}"
MEDIATION_BOOKED_STAFF = "新的调解预约：{case_number}，{when}，由{who}预约。"
MEDIATION_MOVED = (
    "本案的远程调解改期了：{when}，调解员{name}（原来是 {was}）。\n到时请点击链接进入调解室：{link}"
)
MEDIATION_MOVED_STAFF = "调解预约改期：{case_number}，{was} 改到 {when}。"
MEDIATION_WITHDRAWN = (
    "法院取消了本案 {when} 的远程调解（调解员{name}）。\n"
    "如仍需调解，请在菜单里选择“预约调解”重新预约。"
)
MEDIATION_WITHDRAWN_STAFF = "调解预约已由法院取消：{case_number}，{when}。"
MEDIATION_CANCELLED = "本案 {when} 的远程调解预约已取消。"
MEDIATION_CANCELLED_STAFF = "调解预约已取消：{case_number}，{when}。"
REMINDER_TITLE = "远程调解提醒"
REMINDER = "提醒：{day}（{when}）有远程调解，案号{case_number}。\n请提前几分钟点击链接进入：{link}"
REMINDER_DAYS = {"today": "今天", "tomorrow": "明天", "hour": "一小时后"}
# Enforcement progress.
PROGRESS_NEWS_TITLE = "执行案件有新进展"
PROGRESS_NEWS = "您的执行案件 {case_number} 有新进展：\n{event}\n发送 4 查看全部进度。"
EVENT_NAMES = {
    "filing": "执行立案",
    "notice": "发出执行通知书",
    "asset_search": "网络查控（查询财产）",
    "freeze": "冻结、查封财产",
    "valuation": "评估、拍卖",
    "received": "收到执行款",
    "paid_out": "发放执行款",
    "closed": "终结执行 / 结案",
}


def yuan(cents: int) -> str:
    """Money as people read it: 12,000.50元."""
    return f"{Decimal(cents) / 100:,.2f}元"


def event_line(kind: str, at: datetime, amount_cents: int | None, note: str | None) -> str:
    """One enforcement event: when, what, how much, and the court's note."""
    money = f" {yuan(amount_cents)}" if amount_cents is not None else ""
    said = f"（{note}）" if note else ""
    return f"{say_time(at)}：{EVENT_NAMES.get(kind, kind)}{money}{said}"


# An item's history (mst ticket history, the console, the audit export): each step in words.
HISTORY_WORDS = {
    "ticket.opened": "提交",
    "ticket.message_added": "当事人补充",
    "ticket.answered": "答复",
    "ticket.claimed": "认领",
    "ticket.transferred": "转办",
    "ticket.moved": "改由他人办理",
    "ticket.escalated": "到期升级",
    "ticket.warned": "到期提醒",
    "ticket.refused": "操作被拒绝",
    "ticket.closed": "办结",
}


# voice messages (handlers.voice, bot.rules.voice): WeChat's recognised words checked back
# where a mistake matters; a voice without words kept, and staff told how long it is.
VOICE_CONFIRM = "您说的是：“{said}”，对吗？回复1确认，2重说"
VOICE_AGAIN = "好的，请您再说一遍。\n也可以直接打字发送。"
VOICE_UNHEARD = "抱歉，没有听清您的语音。\n请再说一遍，或者直接打字发送。"
VOICE_UNHEARD_MENU = "您的语音已收到。\n要给法官留语音，请先回复1（咨询法官），再发送语音。"
VOICE_NOTE = "语音留言"  # a voice without words, as staff see it in a notice or a thread
VOICE_SECONDS = "语音留言（{seconds}秒）"


def voice_note(seconds: float | None) -> str:
    """A voice without words, as staff read it: "语音留言（12秒）", or "语音留言" while its
    length is not known (its audio not fetched yet)."""
    if seconds is None:
        return VOICE_NOTE
    return VOICE_SECONDS.format(seconds=max(1, round(seconds)))


# The page that plays a voice message for staff (bot.app.pages, /media/<id>/play).
VOICE_PAGE_FROM = "当事人发来的语音，{at}"
VOICE_PAGE_DOWNLOAD = "下载语音文件"
VOICE_PAGE_NO_PLAYER = "这里暂时不能直接播放，请下载后收听。"


# WeCom (企业微信): the court's app for staff (bot.channels.wecom). Nobody there is a
# litigant: someone not linked to a staff account is asked for their bind code.
WECOM_NOT_LINKED = (
    "您好！这里是法院工作人员使用的企业微信应用。\n"
    "您的企业微信还没有关联工作人员账号，请把管理员给您的绑定码发到这里。"
)
WECOM_WELCOME = "您好！当事人的诉求会发到这里，直接在这里答复即可。\n" + STAFF_HELP
# When a member's message budget at WeCom runs low, their notices go out together: none
# is dropped, the messages are fewer.
WECOM_DIGEST_HEAD = "通知较多，合并发送 {count} 条："
WECOM_DIGEST_GAP = "\n————\n"
WECOM_CARD_BUTTON = "详情"  # a text card's button: 4 characters at most
WECOM_MORE = "（接下条）"  # a text longer than one WeCom message ends so, and goes on
# The console's sign-in with WeCom (/console/login/wecom).
WECOM_LOGIN_BUTTON = "企业微信登录"
WECOM_LOGIN_TITLE = "企业微信登录"
WECOM_LOGIN_UNKNOWN = "您的企业微信还没有关联工作人员账号。\n请在企业微信里把管理员给您的绑定码发给“码上通”应用，再来登录。"
WECOM_LOGIN_EXPIRED = "登录已过期或不是从本页发起的，请重新点“企业微信登录”。"
WECOM_LOGIN_CANCELLED = "没有完成企业微信授权，请重新点“企业微信登录”。"
WECOM_LOGIN_UNAVAILABLE = "暂时连不上企业微信，请稍后再试，或用用户名和密码登录。"
