// dcmjs ships no type declarations; we type the small surface we use at the call sites.
declare module 'dcmjs' {
  const dcmjs: any;
  export default dcmjs;
}
