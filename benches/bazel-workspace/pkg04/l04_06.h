#ifndef PKG04_L04_06_H
#define PKG04_L04_06_H
#include <string>
#include <vector>

namespace l04_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_06

#endif
