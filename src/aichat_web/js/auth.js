// Where the page's token comes from, and where it is kept.
//
// A token arrives in the URL fragment (#token=… from `make run`, or #access_token=… as an
// OAuth2/OIDC implicit redirect gives it), which browsers never send to a server, so it
// reaches no access log. It is moved at once to sessionStorage (this tab only, gone when
// the tab closes) and wiped from the address bar: at start, and whenever the fragment
// changes (a sign-in link pasted into a tab that is already open).

const KEY = "aichat.token";

// True when the fragment brought a token (now kept, and gone from the address bar).
export function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token") || params.get("access_token");
  if (!token) return false;
  sessionStorage.setItem(KEY, token);
  params.delete("token");
  params.delete("access_token");
  for (const key of ["token_type", "expires_in", "scope", "state", "id_token"]) {
    params.delete(key);
  }
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  return true;
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

// The sign-in message: shown without a token, or when the API says the token is not
// (or no longer) valid. Never a blank page.
export function showSignIn(reason, { title = "Sign in to continue", retry = false } = {}) {
  document.getElementById("app").hidden = true;
  document.getElementById("signin").hidden = false;
  document.getElementById("signin-title").textContent = title;
  document.getElementById("signin-reason").textContent = reason || "";
  document.getElementById("signin-retry").hidden = !retry;
}
