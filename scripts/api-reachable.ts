/**
 * The declarations an entry point's exports reach without exporting them ("forgotten exports"):
 * `usageHistory` answers `UsagePeriod[]`, and a user meets every field of `UsagePeriod` though no
 * entry point lets them import the name. scripts/api-report.ts shows each one's declaration after
 * the exported ones, so a change to one changes the report.
 *
 * A declaration is walked where its `.d.ts` would show it: type annotations, type parameters,
 * heritage clauses (`extends`, `implements`) and `typeof` queries, never function bodies or
 * initializers, and not private or `#` class members (the `.d.ts` keeps their names only). Where
 * the type is inferred (a `const` without an annotation, a function without a return type), the
 * checker's type is walked instead, as the declaration emitter would print it.
 */

import ts from 'typescript';

/**
 * The symbol a reference names, aliases resolved, when it is one a report can show: a top-level
 * interface, type alias, class, enum, function, variable or namespace (an enum member stands for
 * its enum). Type parameters, parameters, properties and modules are not.
 */
function declared(checker: ts.TypeChecker, symbol: ts.Symbol | undefined): ts.Symbol | undefined {
  if (!symbol) return undefined;
  const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
  const [first] = target.declarations ?? [];
  if (!first) return undefined;
  if (ts.isEnumMember(first)) return checker.getSymbolAtLocation(first.parent.name);
  const shown = (target.declarations ?? []).some(
    (d) =>
      ts.isInterfaceDeclaration(d) ||
      ts.isTypeAliasDeclaration(d) ||
      ts.isClassDeclaration(d) ||
      ts.isEnumDeclaration(d) ||
      ts.isFunctionDeclaration(d) ||
      (ts.isModuleDeclaration(d) && ts.isIdentifier(d.name)) ||
      (ts.isVariableDeclaration(d) && ts.isVariableStatement(d.parent.parent)),
  );
  return shown ? target : undefined;
}

/** A class member the `.d.ts` shows by name only: `private x;`, `#private;`. */
function isPrivate(node: ts.Node): boolean {
  if (!ts.isClassElement(node)) return false;
  if (node.name && ts.isPrivateIdentifier(node.name)) return true;
  return (ts.getModifiers(node as ts.HasModifiers) ?? []).some(
    (m) => m.kind === ts.SyntaxKind.PrivateKeyword,
  );
}

/**
 * Every symbol that `roots`' declarations reach, directly or through each other, for which
 * `shown` holds (declared in the package, say), in the order they are met; the roots themselves
 * are left out. A symbol for which `shown` does not hold is neither listed nor walked.
 */
export function reachableFrom(
  checker: ts.TypeChecker,
  roots: readonly ts.Symbol[],
  shown: (symbol: ts.Symbol) => boolean,
): ts.Symbol[] {
  const met = new Set<ts.Symbol>();
  const queue: ts.Symbol[] = [];
  const add = (symbol: ts.Symbol | undefined) => {
    const target = declared(checker, symbol);
    if (!target || met.has(target) || !shown(target)) return;
    met.add(target);
    queue.push(target);
  };
  // `a.b.C`: C when it is a declaration of its own, else what `a.b` names (`typeof x.y` is x).
  const addEntity = (name: ts.EntityName | ts.Expression): void => {
    const at = ts.isQualifiedName(name)
      ? name.right
      : ts.isPropertyAccessExpression(name)
        ? name.name
        : name;
    const symbol = declared(checker, checker.getSymbolAtLocation(at));
    if (symbol) add(symbol);
    else if (ts.isQualifiedName(name)) addEntity(name.left);
    else if (ts.isPropertyAccessExpression(name)) addEntity(name.expression);
  };
  const seenTypes = new Set<ts.Type>();
  const visitType = (type: ts.Type): void => {
    if (seenTypes.has(type)) return;
    seenTypes.add(type);
    if (type.aliasSymbol) {
      add(type.aliasSymbol);
      for (const argument of type.aliasTypeArguments ?? []) visitType(argument);
      return;
    }
    if (type.isUnionOrIntersection()) {
      for (const member of type.types) visitType(member);
      return;
    }
    if (type.flags & ts.TypeFlags.EnumLiteral && type.symbol) {
      add(type.symbol);
      return;
    }
    if (type.flags & ts.TypeFlags.Index) {
      visitType((type as ts.IndexType).type);
      return;
    }
    if (type.flags & ts.TypeFlags.IndexedAccess) {
      visitType((type as ts.IndexedAccessType).objectType);
      visitType((type as ts.IndexedAccessType).indexType);
      return;
    }
    if (!(type.flags & ts.TypeFlags.Object)) return;
    const object = type as ts.ObjectType;
    if (object.objectFlags & ts.ObjectFlags.Reference) {
      const { target } = type as ts.TypeReference;
      if (target.symbol) add(target.symbol);
      for (const argument of checker.getTypeArguments(type as ts.TypeReference))
        visitType(argument);
      if (target.symbol || target.objectFlags & ts.ObjectFlags.Tuple) return;
    }
    // A named type (an interface, a class, `typeof` a function) stands for its declaration.
    if (declared(checker, type.symbol)) {
      add(type.symbol);
      return;
    }
    // An anonymous one is shown whole: its properties, signatures and index signatures.
    for (const property of checker.getPropertiesOfType(type))
      visitType(checker.getTypeOfSymbol(property));
    for (const kind of [ts.SignatureKind.Call, ts.SignatureKind.Construct])
      for (const signature of checker.getSignaturesOfType(type, kind)) {
        for (const parameter of signature.getParameters())
          visitType(checker.getTypeOfSymbol(parameter));
        visitType(checker.getReturnTypeOfSignature(signature));
      }
    for (const index of checker.getIndexInfosOfType(type)) {
      visitType(index.keyType);
      visitType(index.type);
    }
  };
  const visitNode = (node: ts.Node): void => {
    if (isPrivate(node)) return;
    if (ts.isTypeReferenceNode(node)) addEntity(node.typeName);
    else if (ts.isTypeQueryNode(node)) addEntity(node.exprName);
    else if (ts.isExpressionWithTypeArguments(node)) {
      addEntity(node.expression);
      for (const argument of node.typeArguments ?? []) visitNode(argument);
      return;
    } else if (ts.isImportTypeNode(node)) {
      visitType(checker.getTypeFromTypeNode(node));
      return;
    }
    // What the `.d.ts` prints for a type left to inference.
    if (
      (ts.isVariableDeclaration(node) || ts.isParameter(node) || ts.isPropertyDeclaration(node)) &&
      !node.type
    )
      visitType(checker.getTypeAtLocation(node.name));
    if (
      (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isGetAccessor(node)) &&
      !node.type
    ) {
      const signature = checker.getSignatureFromDeclaration(node);
      if (signature) visitType(checker.getReturnTypeOfSignature(signature));
    }
    // Not in the `.d.ts`: a function's body, an initializer, a decorator, a static block.
    if (ts.isClassStaticBlockDeclaration(node)) return;
    const skipped = new Set<ts.Node | undefined>([
      ts.isFunctionLike(node) ? (node as { readonly body?: ts.Node }).body : undefined,
      (node as { readonly initializer?: ts.Node }).initializer,
    ]);
    ts.forEachChild(node, (child) => {
      if (!skipped.has(child) && !ts.isDecorator(child)) visitNode(child);
    });
  };
  for (const root of roots) met.add(root);
  const walk = (symbol: ts.Symbol) => {
    for (const declaration of symbol.declarations ?? []) visitNode(declaration);
  };
  for (const root of roots) walk(root);
  const reached: ts.Symbol[] = [];
  for (let next = queue.shift(); next; next = queue.shift()) {
    reached.push(next);
    walk(next);
  }
  return reached;
}
