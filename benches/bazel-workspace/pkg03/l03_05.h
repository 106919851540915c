#ifndef PKG03_L03_05_H
#define PKG03_L03_05_H
#include <string>
#include <vector>

namespace l03_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_05

#endif
