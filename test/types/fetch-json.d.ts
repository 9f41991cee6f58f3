// Tests read many JSON bodies of known shape: let `await res.json()` be `any` there instead of `unknown`.
export {};
declare global {
  interface Body {
    json(): Promise<any>;
  }
  interface Response {
    json(): Promise<any>;
  }
}
