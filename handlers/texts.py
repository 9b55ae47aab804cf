"""What people read, in one place: short, polite, numbered, for elderly readers too."""

WELCOME = (
    "您好，这里是法院“码上通”。\n"
    "请用微信扫一扫案件材料上的二维码，\n"
    "或直接发送二维码下方的10位案件码。"
)
CODE_OK = "您好！您扫描的是：\n{court}\n{case_number}（{cause}）\n"
CODE_REVOKED = "这个二维码已经停用了。\n请向法院索取新的二维码，或拨打诉讼服务电话咨询。"
CODE_UNKNOWN = "没有找到这个案件码。\n请核对二维码下方的10位案件码后重新发送。"
CODE_MISTYPED = "案件码好像输错了一位。\n请对照材料再输入一次（字母不分大小写）。"
UNSUPPORTED = "抱歉，目前只能接收文字消息。\n请用文字告诉我们您的问题，谢谢。"
SLOW_DOWN = "您发送得太快了，请稍等一分钟再发。\n您刚才的消息我们已经收到。"
BUSY = "您的消息已收到，系统正忙，稍后会有人回复您。"
