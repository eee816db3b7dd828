// cardhub app: every word the cardholder's page shows, in Chinese and English. {name} is filled in
// by the script. Money and times are formatted by the script, never written here.
export const TEXT = {
  zh: {
    title: "校园卡", signout: "退出", signinTitle: "登录校园卡", accountId: "学号 / 工号", pin: "查询密码",
    signin: "登录", signinHelp: "查询密码为 6 位数字，由卡务中心设置；忘记时请到卡务中心重置。",
    signingIn: "正在登录…", loading: "加载中…",
    wrongPin: "学号 / 工号或查询密码不正确。", locked: "密码错误次数过多，登录已锁定，请 {minutes} 分钟后再试。",
    badInput: "请输入学号 / 工号和 6 位数字的查询密码。",
    expired: "登录已过期，请重新登录。", signedOut: "已退出。",
    total: "余额", cash: "现金", subsidy: "补助", updated: "更新于 {time}",
    retrying: "连接失败，稍后自动重试。", serverError: "服务暂时不可用（{status}），请稍后再试。",
    cards: "我的卡", noCards: "暂无卡片", physical: "实体卡", active: "正常", lost: "已挂失", cancelled: "已注销",
    reportLost: "挂失", reportFound: "解挂",
    confirmTitle: "确认挂失？", confirmText: "挂失后，卡 {card} 立即不能消费和通行；找到后可以在这里解挂。",
    confirmOk: "确认挂失", cancel: "取消",
    lostDone: "卡 {card} 已挂失。", foundDone: "卡 {card} 已解挂，可以正常使用。",
    foundRefused: "无法解挂：此账户已有另一张正常使用的卡（{detail}）。",
    lostRefused: "无法挂失：此卡当前不是正常状态（{detail}）。", cardForbidden: "无权操作这张卡。",
    transactions: "最近交易", noTransactions: "暂无交易", declined: "未成功：{reason}", declinedShort: "未成功", balanceAfter: "余额 {amount}",
    purchase: "消费", reversal: "冲正退回", topup: "充值", subsidyIn: "补助发放", refund: "退款",
    payout: "销户领取现金", expiry: "补助过期",
    changePin: "修改查询密码", oldPin: "原密码", newPin: "新密码（6 位数字）", newPinAgain: "再次输入新密码",
    savePin: "修改密码", pinNotSix: "新密码必须是 6 位数字。", pinMismatch: "两次输入的新密码不一致。",
    pinBadInput: "原密码和新密码都必须是 6 位数字。", pinChanged: "查询密码已修改。", wrongOldPin: "原密码不正确。",
    pinLocked: "密码错误次数过多，请 {minutes} 分钟后再试。", pinRefused: "无法修改密码：{detail}",
    reads: "谁查看了我的信息", noReads: "还没有人查看过你的信息。",
    readsHelp: "卡务中心、审计等人员每次查看你的余额、交易或卡片都会记录在这里。",
  },
  en: {
    title: "Campus card", signout: "Sign out", signinTitle: "Sign in to your campus card",
    accountId: "Student / staff number", pin: "Query PIN", signin: "Sign in",
    signinHelp: "The query PIN has 6 digits and is set by the card office; it resets a forgotten one.",
    signingIn: "Signing in…", loading: "Loading…",
    wrongPin: "Wrong student / staff number or PIN.",
    locked: "Too many wrong PINs: sign-in is locked. Try again in {minutes} min.",
    badInput: "Enter your student / staff number and a 6-digit PIN.",
    expired: "Your session has expired. Please sign in again.", signedOut: "Signed out.",
    total: "Balance", cash: "Cash", subsidy: "Subsidy", updated: "Updated {time}",
    retrying: "Connection failed; retrying shortly.", serverError: "The service is unavailable ({status}); try again later.",
    cards: "My cards", noCards: "No cards", physical: "Card", active: "Active", lost: "Reported lost",
    cancelled: "Cancelled", reportLost: "Report lost", reportFound: "Found it",
    confirmTitle: "Report this card lost?",
    confirmText: "Card {card} stops paying and opening doors at once; you can undo it here when you find it.",
    confirmOk: "Report lost", cancel: "Cancel",
    lostDone: "Card {card} is reported lost.", foundDone: "Card {card} works again.",
    foundRefused: "Cannot undo: the account has another active card ({detail}).",
    lostRefused: "Cannot report it lost: the card is not active ({detail}).",
    cardForbidden: "You may not change this card.",
    transactions: "Latest transactions", noTransactions: "No transactions yet", declined: "Declined: {reason}", declinedShort: "Declined",
    balanceAfter: "balance {amount}",
    purchase: "Purchase", reversal: "Reversal (money back)", topup: "Top-up", subsidyIn: "Subsidy",
    refund: "Refund", payout: "Cash paid out (account closed)", expiry: "Subsidy expired",
    changePin: "Change query PIN", oldPin: "Current PIN", newPin: "New PIN (6 digits)", newPinAgain: "New PIN again",
    savePin: "Change PIN", pinNotSix: "The new PIN must be 6 digits.", pinMismatch: "The two new PINs differ.",
    pinBadInput: "Both the current and the new PIN are 6 digits.", pinChanged: "Your query PIN has been changed.",
    wrongOldPin: "The current PIN is wrong.", pinLocked: "Too many wrong PINs; try again in {minutes} min.",
    pinRefused: "The PIN was not changed: {detail}",
    reads: "Who read my data", noReads: "Nobody has read your data yet.",
    readsHelp: "Every time the card office, an auditor or an administrator reads your balance, transactions or cards, it is listed here.",
  },
};

// Why a swipe was declined (DESIGN §2, §10, §11), in words.
export const REASONS = {
  zh: {
    insufficient_funds: "余额不足", card_unknown: "未登记的卡", card_lost: "卡已挂失", card_cancelled: "卡已注销",
    card_expired: "卡不在有效期内", daily_limit: "超过每日限额", no_access: "无通行权限", outside_schedule: "不在开放时间",
    anti_passback: "重复进入", reversal_invalid: "无效的冲正", over_limit: "超过单笔限额",
    credential_invalid: "付款码无效", credential_expired: "付款码过期", credential_reused: "付款码已用过",
  },
  en: {
    insufficient_funds: "insufficient funds", card_unknown: "unknown card", card_lost: "card reported lost",
    card_cancelled: "card cancelled", card_expired: "card not valid now", daily_limit: "daily limit reached",
    no_access: "no access here", outside_schedule: "outside opening hours", anti_passback: "second entry",
    reversal_invalid: "invalid reversal", over_limit: "over the merchant's limit",
    credential_invalid: "invalid payment code", credential_expired: "payment code expired",
    credential_reused: "payment code used before",
  },
};

// Who read a cardholder's records (the reader's role) and what they read (DESIGN §12).
export const READERS = {
  zh: { admin: "系统管理员", operator: "卡务中心", auditor: "审计人员", manager: "后勤管理", merchant: "商户",
        warden: "宿管", cardholder: "本人", cli: "命令行" },
  en: { admin: "Administrator", operator: "Card office", auditor: "Auditor", manager: "Logistics manager",
        merchant: "Merchant", warden: "Warden", cardholder: "You", cli: "Command line" },
};
export const READ_WHAT = {
  zh: { account: "账户信息", balance: "余额", transactions: "交易记录", cards: "卡片", access_log: "门禁记录",
        audit_events: "审计事件", reads: "查看记录" },
  en: { account: "account details", balance: "balance", transactions: "transactions", cards: "cards",
        access_log: "gate log", audit_events: "audit events", reads: "this list" },
};
