// The console's strings: English and Simplified Chinese. The language follows the browser
// (navigator.languages) until the user picks one; the choice is kept in localStorage.
"use strict";
window.WHARF_I18N = {
  en: {
    skip: "Skip to content", logout: "Log out", "login.title": "Sign in to wharf", "login.user": "User name",
    "login.password": "Password", "login.submit": "Sign in", "login.failed": "Wrong user name or password.",
    "nav.dashboard": "Dashboard", "nav.browse": "Browse", "nav.create": "Create repository", "nav.users": "Users",
    "nav.roles": "Roles", "nav.ldap": "LDAP", "nav.tokens": "API tokens", "nav.audit": "Audit log",
    "dash.repos": "Repositories", "dash.stores": "Blob stores", "dash.status": "Server", "dash.healthy": "healthy",
    name: "Name", format: "Format", type: "Type", url: "URL", online: "Online", size: "Size", count: "Artifacts",
    blobs: "Blobs", actions: "Actions", yes: "yes", no: "no", edit: "Edit", delete: "Delete", usage: "How to use",
    save: "Save", create: "Create", cancel: "Cancel", back: "Back",
    "confirm.delete": "Delete {0}? This cannot be undone.", "repo.created": "Repository {0} created.",
    "repo.saved": "Repository {0} saved.", "repo.deleted": "Repository {0} deleted.",
    "form.remoteUrl": "Remote URL", "form.members": "Members (in order)", "form.writable": "Writable member",
    "form.httpPort": "HTTP port (optional)", "form.anonymous": "Anonymous read", "form.blobStore": "Blob store",
    "form.writePolicy": "Write policy", "form.metadataMaxAge": "Metadata max age (minutes)",
    "usage.title": "Using {0}", "browse.title": "Browse", "browse.pick": "Repository", "version": "Version",
    "uploaded": "Uploaded", files: "Files", search: "Search", "uploader": "Uploader", "digest": "Digest", "yank": "Yank", "unyank": "Unyank",
    "users.title": "Users", "roles.title": "Roles", "privileges": "Privileges", "roles": "Roles", "status": "Status",
    "password": "Password", "password.current": "Current password", "email": "E-mail", "ldap.title": "LDAP servers", "ldap.test": "Test connection",
    "ldap.testLogin": "Test login", "tokens.title": "API tokens", "tokens.new": "New token", "tokens.shown": "Copy this token now: it is shown once.",
    "readOnly": "Read only", "repository": "Repository", "expires": "Expires in days (optional)", "revoke": "Revoke",
    "audit.title": "Audit log", "when": "When", "who": "Who", "what": "What", "from": "From", "object": "Object",
    "filter": "Filter", "more": "More", "copy": "Copy", "copied": "Copied", "none": "Nothing here yet.",
    "error": "Something went wrong: {0}", "forbidden": "You may not see this page."
  },
  "zh-CN": {
    skip: "跳到内容", logout: "退出", "login.title": "登录 wharf", "login.user": "用户名",
    "login.password": "密码", "login.submit": "登录", "login.failed": "用户名或密码错误。",
    "nav.dashboard": "概览", "nav.browse": "浏览", "nav.create": "创建仓库", "nav.users": "用户",
    "nav.roles": "角色", "nav.ldap": "LDAP", "nav.tokens": "API 令牌", "nav.audit": "审计日志",
    "dash.repos": "仓库", "dash.stores": "存储", "dash.status": "服务器", "dash.healthy": "正常",
    name: "名称", format: "格式", type: "类型", url: "地址", online: "在线", size: "大小", count: "制品数",
    blobs: "文件数", actions: "操作", yes: "是", no: "否", edit: "编辑", delete: "删除", usage: "使用方法",
    save: "保存", create: "创建", cancel: "取消", back: "返回",
    "confirm.delete": "确定删除 {0}？此操作无法撤销。", "repo.created": "已创建仓库 {0}。",
    "repo.saved": "已保存仓库 {0}。", "repo.deleted": "已删除仓库 {0}。",
    "form.remoteUrl": "远程地址", "form.members": "成员（按顺序）", "form.writable": "可写成员",
    "form.httpPort": "HTTP 端口（可选）", "form.anonymous": "允许匿名读取", "form.blobStore": "存储",
    "form.writePolicy": "写入策略", "form.metadataMaxAge": "元数据缓存时间（分钟）",
    "usage.title": "如何使用 {0}", "browse.title": "浏览", "browse.pick": "仓库", "version": "版本",
    "uploaded": "上传时间", files: "文件", search: "搜索", "uploader": "上传者", "digest": "摘要", "yank": "撤回", "unyank": "取消撤回",
    "users.title": "用户", "roles.title": "角色", "privileges": "权限", "roles": "角色", "status": "状态",
    "password": "密码", "password.current": "当前密码", "email": "邮箱", "ldap.title": "LDAP 服务器", "ldap.test": "测试连接",
    "ldap.testLogin": "测试登录", "tokens.title": "API 令牌", "tokens.new": "新建令牌", "tokens.shown": "请立即复制此令牌：它只显示一次。",
    "readOnly": "只读", "repository": "仓库", "expires": "有效天数（可选）", "revoke": "吊销",
    "audit.title": "审计日志", "when": "时间", "who": "用户", "what": "操作", "from": "来源", "object": "对象",
    "filter": "筛选", "more": "更多", "copy": "复制", "copied": "已复制", "none": "暂无内容。",
    "error": "出错了：{0}", "forbidden": "你无权查看此页面。"
  }
};
