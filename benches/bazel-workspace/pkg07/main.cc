#include "pkg07/l07_00.h"
#include "pkg07/l07_01.h"
#include "pkg07/l07_02.h"
#include "pkg07/l07_03.h"
#include "pkg07/l07_04.h"
#include "pkg07/l07_05.h"
#include "pkg07/l07_06.h"
#include "pkg07/l07_07.h"
#include "pkg07/l07_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l07_00::describe(argc) << "\n";
  std::cout << l07_01::describe(argc) << "\n";
  std::cout << l07_02::describe(argc) << "\n";
  std::cout << l07_03::describe(argc) << "\n";
  std::cout << l07_04::describe(argc) << "\n";
  std::cout << l07_05::describe(argc) << "\n";
  std::cout << l07_06::describe(argc) << "\n";
  std::cout << l07_07::describe(argc) << "\n";
  std::cout << l07_08::describe(argc) << "\n";
  return 0;
}
