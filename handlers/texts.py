"""What people read, in one place: short, polite, numbered, for elderly readers too."""

WELCOME = (
    "您好，这里是法院“码上通”。\n"
    "请用微信扫一扫案件材料上的二维码，\n"
    "或直接发送二维码下方的10位案件码。"
)
CODE_OK = "您好！您扫描的是：\n{court}\n{case_number}（{cause}）\n"
ASK_DIGITS = "为确认您的身份，请输入本案登记的手机号码后四位。"
CODE_REVOKED = "这个二维码已经停用了。\n请向法院索取新的二维码，或拨打诉讼服务电话咨询。"
CODE_UNKNOWN = "没有找到这个案件码。\n请核对二维码下方的10位案件码后重新发送。"
CODE_MISTYPED = "案件码好像输错了一位。\n请对照材料再输入一次（字母不分大小写）。"
UNSUPPORTED = "抱歉，目前只能接收文字消息。\n请用文字告诉我们您的问题，谢谢。"
SLOW_DOWN = "您发送得太快了，请稍等一分钟再发。\n您刚才的消息我们已经收到。"
BUSY = "您的消息已收到，系统正忙，稍后会有人回复您。"

# verification
DIGITS_ONLY = "请输入4位数字，也就是登记手机号的最后四位。\n发送 0 可以取消。"
VERIFIED = "验证成功！您是本案的{role}{name}。\n\n"
WRONG_DIGITS = "号码不对，请再试一次。\n还可以再试 {left} 次。"
LOCKED = "输错次数太多了，为保护您的案件信息，请1小时后再试。\n如需帮助，请到法院诉讼服务中心。"
ALREADY_BOUND = "您已经验证过这个案件了。\n\n"

# menu
MENU = (
    "当前案件：{case_number}\n"
    "请回复数字选择：\n"
    "1 咨询法官\n"
    "2 投诉举报\n"
    "3 预约调解\n"
    "4 执行进度\n"
    "5 评价服务\n"
    "发送“我的诉求”查看办理情况{switch}"
)
MENU_SWITCH = "\n发送“切换”更换案件"
NOT_YET = "这项服务正在准备中，暂时不能使用。\n请先选择 1 咨询法官，或拨打法院诉讼服务电话。\n\n"
SWITCH_LIST = "您验证过的案件：\n{lines}\n请回复序号切换。"
SWITCHED = "已切换到：{case_number}\n\n"
NO_TICKETS = "您在本案还没有提交过诉求。\n\n"
MY_TICKETS = "您在本案的诉求：\n{lines}\n\n"

# ask
ASK_PROMPT = "请直接输入您要咨询的问题，一条消息说清楚就好。\n发送 0 返回菜单。"
ASK_RECEIVED = (
    "已收到您的咨询，编号 #{ticket}。\n"
    "{who}会在 {due} 前答复您。\n"
    "回执编号：{receipt}\n"
    "如需补充，直接发送即可；发送 0 返回菜单。"
)
ASK_ADDED = "已补充到咨询 #{ticket}，会一并转给{who}。\n发送 0 返回菜单。"
RECEPTION = "法院接待人员"

# staff
STAFF_BOUND = (
    "绑定成功！{name}（{username}），您好。\n当事人的诉求会发到这里。\n发送“待办”查看待处理事项。"
)
BIND_CODE_BAD = "这个绑定码无效或已经用过了。\n请向管理员重新获取。"
STAFF_HELP = (
    "工作人员可用的指令：\n"
    "待办 —— 查看待处理事项\n"
    "#编号 回复内容 —— 答复当事人\n"
    "#编号 结 —— 办结该事项"
)
STAFF_NO_TICKET = "没有找到 #{ticket}。"
STAFF_NOT_YOURS = "#{ticket} 不是分给您或您所在团队的事项，不能处理。"
STAFF_ANSWERED = "已将您的答复发给当事人（#{ticket}）。"
STAFF_CLOSED = "#{ticket} 已办结，已通知当事人。"
STAFF_ALREADY_CLOSED = "#{ticket} 已经办结了。"
STAFF_EMPTY_ANSWER = "请在编号后面写上答复内容，例如：#{ticket} 您好，开庭时间是……"
STAFF_TODO_EMPTY = "目前没有待处理的事项。"
STAFF_TODO = "待处理事项（最早的在前）：\n{lines}"
