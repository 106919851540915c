#include "pkg06/l06_00.h"
#include "pkg06/l06_01.h"
#include "pkg06/l06_02.h"
#include "pkg06/l06_03.h"
#include "pkg06/l06_04.h"
#include "pkg06/l06_05.h"
#include "pkg06/l06_06.h"
#include "pkg06/l06_07.h"
#include "pkg06/l06_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l06_00::describe(argc) << "\n";
  std::cout << l06_01::describe(argc) << "\n";
  std::cout << l06_02::describe(argc) << "\n";
  std::cout << l06_03::describe(argc) << "\n";
  std::cout << l06_04::describe(argc) << "\n";
  std::cout << l06_05::describe(argc) << "\n";
  std::cout << l06_06::describe(argc) << "\n";
  std::cout << l06_07::describe(argc) << "\n";
  std::cout << l06_08::describe(argc) << "\n";
  return 0;
}
