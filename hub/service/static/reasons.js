// cardhub's pages (the dashboard, the app): why a swipe was declined (DESIGN §2, §10, §11), in
// Chinese and English; a module their words re-export.
export const REASONS = {
  zh: {
    insufficient_funds: "余额不足", card_unknown: "未登记的卡", card_lost: "已挂失的卡", card_cancelled: "已注销的卡",
    card_expired: "卡不在有效期内", daily_limit: "超过每日限额", no_access: "无通行权限", outside_schedule: "不在开放时间",
    anti_passback: "重复进入（防潜回）", reversal_invalid: "无效的冲正", over_limit: "超过单笔限额",
    credential_invalid: "付款码无效", credential_expired: "付款码过期", credential_reused: "付款码已用过",
    offline_declined: "设备离线时拒绝",
  },
  en: {
    insufficient_funds: "Insufficient funds", card_unknown: "Unknown card", card_lost: "Card reported lost",
    card_cancelled: "Card cancelled", card_expired: "Card not valid now", daily_limit: "Daily limit reached",
    no_access: "No access here", outside_schedule: "Outside opening hours", anti_passback: "Second entry (anti-passback)",
    reversal_invalid: "Invalid reversal", over_limit: "Over the merchant's limit", credential_invalid: "Invalid payment code",
    credential_expired: "Payment code expired", credential_reused: "Payment code used before",
    offline_declined: "Declined by the device offline",
  },
};
