#ifndef PKG04_L04_03_H
#define PKG04_L04_03_H
#include <string>
#include <vector>

namespace l04_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_03

#endif
